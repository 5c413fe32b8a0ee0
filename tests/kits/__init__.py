"""Testing aids, used by the tests and the benchmarks under ``bench/``, never by the
product. Import the module you need (they pull in different dependencies):

- ``tests.kits.scripted_engine``: a deterministic engine (``ScriptedEngine``);
- ``tests.kits.vllm_compat_server``: a server with the vLLM HTTP endpoints the vLLM
  engine uses, for faults real vLLM cannot be made to show (``VllmCompatServer``);
- ``tests.kits.synthetic_traffic``: synthetic chat events, deterministic by seed
  (``synthetic_events``).
"""
