"""Labelled PII examples: (text, [(pii substring, kind), ...]). Negatives have no spans.

Written by hand to look like chat traffic: values in sentences, several formats per
kind, and hard negatives (order numbers, prices, dates, times, versions, scores)."""

from __future__ import annotations

EMAILS = [
    "jane.doe@example.com", "bob_smith99@mail.co.uk", "x.y-z+tag@sub.domain.org", "MARIA.LOPEZ@Empresa.ES",
    "li.wei@university.edu.cn", "contact@my-shop.io", "a@b.co", "first.last@company.travel",
    "kim.park@korea.kr", "noreply+alerts@service.net", "o'brien@irish.ie".replace("'", ""),
    "dev.team@startup.ai", "support@help-desk.com", "j.s.bach@music.de", "test123@test123.info",
    "user.name@gmail.com", "hello@world.dev", "pat.k@outlook.fr", "ana-maria@correo.mx",
    "z@zz.zz", "accounts.payable@bigcorp.com", "tom.jones@yahoo.co.jp", "reach.me@proton.me",
    "sales-eu@vendor.eu", "ceo@tiny.biz", "priya.sharma@infosys.in", "ahmed.ali@mail.ae",
    "chris_1984@hotmail.com", "m.muller@web.de", "lucy@lucy.blog", "x_y@x-y.museum",
    "ops@cloud-infra.systems", "nina.k@post.cz", "max.power@springfield.us", "info@bakery.london",
]
EMAIL_TEMPLATES = [
    "you can reach me at {} anytime", "my email is {}", "send it to {} please", "{} is my work address",
    "email: {}", "ping me ({}) tomorrow", "cc {} on that thread",
]

PHONES = [
    "+1 (555) 123-4567", "555-123-4567", "(555) 987 6543", "555.234.5678", "+44 20 7946 0958",
    "07700 900123", "+49 30 901820", "+33 1 23 45 67 89", "+61 2 9876 5432", "+81 3-1234-5678",
    "+91 98765 43210", "020 7946 0018", "+1-202-555-0143", "(03) 9123 4567", "+353 1 234 5678",
    "+34 912 345 678", "+39 06 1234 5678", "2125550199", "+86 10 1234 5678", "+7 495 123-45-67",
    "0049 30 1234567", "+27 21 123 4567", "(212) 555-0182", "+1 415 555 2671", "650-253-0000",
    "+55 11 91234-5678", "+52 55 1234 5678", "+46 8 123 456 78", "+31 20 123 4567", "+65 6123 4567",
    "+972 3-123-4567", "+20 2 2345 6789", "+82 2-312-3456", "+1 (800) 555-0199", "01632 960001",
    "+64 9 123 4567", "+48 22 123 45 67", "+90 212 123 45 67", "303.555.0166", "+1 312 555 0127",
]
PHONE_TEMPLATES = [
    "call me on {}", "my number is {}", "text {} when you land", "phone: {}", "reach me at {} after 6",
    "the office line is {}",
]

CARDS = [
    "4111 1111 1111 1111", "4012-8888-8888-1881", "5555555555554444", "5105 1051 0510 5100",
    "3782 822463 10005", "371449635398431", "6011 1111 1111 1117", "6011000990139424",
    "3530111333300000", "3566 0020 2036 0505", "4000 0566 5566 5556", "5200 8282 8282 8210",
    "2223 0031 2200 3222", "4242 4242 4242 4242", "4000-0025-0000-3155", "3056 9309 0259 04",
    "36227206271667", "6200 0000 0000 0005", "4917 6100 0000 0000", "5425 2334 3010 9903",
    "4263 9826 4026 9299", "374245455400126", "6250 9410 0652 8599", "4000 0000 0000 0002",
    "5454 5454 5454 5454", "4716 0611 0435 1944", "4539 1488 0343 6467", "5531 8866 5214 2950",
    "6011 5145 3337 1989", "4485 2757 4230 8327",
]
CARD_TEMPLATES = ["my card is {}", "charge {} please", "card number: {} exp 04/27", "use {} for the order",
                  "the visa ends... actually it's {}"]

IPS = [
    "192.168.1.1", "10.0.0.254", "172.16.254.1", "8.8.8.8", "203.0.113.42", "198.51.100.7",
    "255.255.255.0", "127.0.0.1", "100.64.12.9", "52.14.200.3", "1.1.1.1", "91.198.174.192",
    "2001:db8::1", "fe80::1ff:fe23:4567:890a", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::1",
    "2606:4700:4700::1111", "169.254.10.20", "45.33.32.156", "185.199.108.153", "13.107.42.14",
    "2a00:1450:4001:82b::200e", "64.233.160.0", "216.58.214.14", "151.101.1.69", "104.16.132.229",
    "34.117.59.81", "23.45.67.89", "199.232.68.133", "140.82.112.3",
]
IP_TEMPLATES = ["my ip is {}", "the server at {} is down", "I connected from {} yesterday", "ssh to {} and check",
                "whitelist {} please"]

ADDRESSES = [
    "221B Baker Street", "1600 Pennsylvania Avenue NW", "742 Evergreen Terrace", "10 Downing Street",
    "350 Fifth Avenue", "1 Infinite Loop", "4059 Mt Lee Drive", "12 Grimmauld Place", "31 Spooner St",
    "1234 Elm St., Apt 5B", "77 Massachusetts Ave", "500 Oak Road, Springfield, IL 62704", "9 Rue Lane",
    "88 Colin P Kelly Jr Street", "2 Macquarie Street", "45 Queen's Road", "600 Montgomery St",
    "18 King William Street", "3 Abbey Road", "120 Harbour View Crescent", "5 Park Close",
    "47 Willow Grove", "16 Chestnut Hill", "250 Sunset Boulevard", "1 Main St, Suite 300",
    "P.O. Box 4521", "PO Box 77", "72 High Street, London", "8 Pine Court", "19 Maple Way",
    "403 Lakeshore Blvd", "66 route Highway", "27 Friedrich Strasse", "14 Ocean Parkway", "90 Bedford Row",
]
ADDRESS_TEMPLATES = ["I live at {}", "ship it to {}", "we moved to {} last year", "the party is at {}",
                     "my address: {}"]

NATIONAL_IDS = [
    "123-45-6789", "078-05-1120", "219 09 9999", "AB 12 34 56 C", "QQ123456C", "JG 10 37 29 D",
    "523-12-8841", "432 76 1189", "667-01-2345", "ZX 98 76 54 A",
]
ID_CONTEXT = [
    ("passport number X1234567", "X1234567"), ("my SSN is 321-54-9876", "321-54-9876"),
    ("SIN: 046 454 286", "046 454 286"), ("national id 19840512-2398", "19840512-2398"),
    ("ID number: 12345678Z", "12345678Z"), ("passport no. 533380006", "533380006"),
    ("my aadhaar is 2345 6789 0123", "2345 6789 0123"), ("PESEL 44051401359", "44051401359"),
    ("DNI 12345678-Z", "12345678-Z"), ("BSN 111222333", "111222333"),
    ("tax id: 98-7654321", "98-7654321"), ("NRIC S1234567D", "S1234567D"),
    ("social security 111-22-3333", "111-22-3333"), ("national insurance QQ 12 34 56 B", "QQ 12 34 56 B"),
    ("TFN 123 456 782", "123 456 782"), ("id card: AB1234567", "AB1234567"),
    ("CPF 123.456.789-09".replace(".", " "), "123 456 789-09"), ("my passport is 987654321", "987654321"),
    ("Personalausweis L01X00T47", "L01X00T47"), ("ssn 555-66-7777", "555-66-7777"),
]
ID_TEMPLATES = ["my ssn is {}", "NI number {}", "here it is: {}"]

NEGATIVES = [
    "order 48213 shipped today", "it costs $1,299.99 with tax", "meet me on 2024-05-17 at 10:30",
    "I scored 98 out of 100", "version 3.2.1 fixed it", "call it a day", "room 404 is free",
    "the year 1999 was wild", "I ran 5 km in 27 minutes", "flight BA 117 leaves at 18:45",
    "we were 12 people at dinner", "my cat is 3 years old", "chapter 11, page 203", "it's 72 degrees outside",
    "top 10 movies of 2023", "save 20% on 3 items", "I walked 3 miles down the street", "the 5 Main ideas",
    "see you at 7", "my favourite number is 42", "temperature 36.6 today", "the score was 3-2",
    "he was born 12/05/1990", "use python 3.11.4", "1 2 3 4 5 6 go", "the law of 1066 and all that",
    "pay 15.50 for lunch", "train 9 arrives in 4 minutes", "I have 2 dogs and 1 cat", "0.5 mg twice a day",
    "what a lovely street this is", "turn left at the avenue", "email me later", "my phone died",
    "I lost my card yesterday", "ip addresses are confusing", "I moved house in march", "my id expired",
    "the passport office is slow", "route 66 was fun", "ISO 9001 certified", "ticket #45812",
    "invoice INV-2024-0042", "batch 7731 passed QA", "we need 250 chairs", "level 99 boss",
    "1080p at 60 fps", "30-60-90 triangle", "she is 5 ft 6", "the 2010s were different",
]


def labelled_examples() -> list[tuple[str, list[tuple[str, str]]]]:
    """Every example, positives first. Kinds: EMAIL, PHONE, CARD, IP, ADDRESS, NATIONAL_ID."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for values, templates, kind in ((EMAILS, EMAIL_TEMPLATES, "EMAIL"), (PHONES, PHONE_TEMPLATES, "PHONE"),
                                    (CARDS, CARD_TEMPLATES, "CARD"), (IPS, IP_TEMPLATES, "IP"),
                                    (ADDRESSES, ADDRESS_TEMPLATES, "ADDRESS"),
                                    (NATIONAL_IDS, ID_TEMPLATES, "NATIONAL_ID")):
        for i, value in enumerate(values):
            out.append((templates[i % len(templates)].format(value), [(value, kind)]))
    for text, value in ID_CONTEXT:
        out.append((text, [(value, "NATIONAL_ID")]))
    # A few with two kinds at once.
    out.append(("mail jane@site.org or call +1 (555) 010-9999", [("jane@site.org", "EMAIL"),
                                                                  ("+1 (555) 010-9999", "PHONE")]))
    out.append(("I'm at 12 Baker Street, card 4111 1111 1111 1111", [("12 Baker Street", "ADDRESS"),
                                                                     ("4111 1111 1111 1111", "CARD")]))
    out.append(("server 10.1.2.3, admin root@10-1-2-3.lan", [("10.1.2.3", "IP"), ("root@10-1-2-3.lan", "EMAIL")]))
    for text in NEGATIVES:
        out.append((text, []))
    return out
