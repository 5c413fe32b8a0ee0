"""Admin API for operators: deployments, statistics, pause / resume / promote / roll back."""

from serving.admin.admin_config import AdminConfig
from serving.admin.service import AdminService

__all__ = ["AdminConfig", "AdminService"]
