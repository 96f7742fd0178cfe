"""The demo shop's fixed data: categories with their price ranges, names, countries, devices."""

CATEGORIES = {
    "shoes": (39.0, 180.0),
    "jackets": (59.0, 320.0),
    "accessories": (9.0, 60.0),
    "outdoor": (25.0, 400.0),
    "kids": (12.0, 90.0),
}
COUNTRIES = ["DE", "DE", "DE", "FR", "NL", "AT", "GB", "US"]
FIRST = [
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Emma",
    "Felix",
    "Greta",
    "Hugo",
    "Ida",
    "Jonas",
    "Lena",
    "Max",
    "Nora",
    "Oskar",
    "Paula",
    "Theo",
    "Mia",
    "Noah",
    "Sofia",
    "Leon",
]
LAST = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Dubois",
    "Jansen",
    "Smith",
    "Martin",
    "Hofmann",
    "Koch",
]
PLACEHOLDER_EMAILS = ["test@test.com", "noemail@example.com", "none@none.com"]
USER_AGENTS = {
    "phone": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "laptop": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "tablet": "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
}
