"""The words and numbers the demo rows are drawn from: names, countries, catalogue, brands."""

from __future__ import annotations

__all__ = [
    "ADJECTIVES",
    "BRANDS",
    "CATALOGUE",
    "COLORS",
    "COUNTRIES",
    "COUNTRY_CUM",
    "CURRENCY",
    "DELETERS",
    "FIRST",
    "FX",
    "LAST",
    "PRICE_POINTS",
    "REASONS",
    "SUFFIXES",
    "TAGS",
]

FIRST = "Ada Alan Grace Linus Margaret Ken Barbara Dennis Frances Edsger Radia Tim Hedy Guido \
Sophie Anita Yukihiro Joan Bjarne Carol John Lynn Niklaus Shafi Donald Leslie Mary Ivan".split()
LAST = "Lovelace Turing Hopper Torvalds Hamilton Thompson Liskov Ritchie Allen Dijkstra Perlman \
Berners-Lee Lamarr Rossum Wilson Borg Matsumoto Clarke Stroustrup Shaw Backus Conway Wirth \
Goldwasser Knuth Lamport Keller Sutherland".split()
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "ES", "IT", "PL", "SE", "CA", None)
COUNTRY_CUM = (30, 44, 58, 68, 74, 80, 86, 90, 94, 98, 100)
CURRENCY = {"US": "USD", "CA": "USD", "GB": "GBP"}  # everything else pays in EUR
FX = {"EUR": 1.0, "USD": 1.08, "GBP": 0.86}  # prices are kept in EUR
CATALOGUE = {
    "Electronics": ("Phones", "Laptops", "Audio", "Cameras", "Wearables"),
    "Home & Kitchen": ("Cookware", "Furniture", "Lighting", "Bedding", "Storage"),
    "Sports": ("Running", "Cycling", "Camping", "Fitness", "Swimming"),
    "Books": ("Fiction", "Science", "Children", "Travel", "Cooking"),
    "Fashion": ("Shoes", "Jackets", "Bags", "Watches", "Accessories"),
    "Toys": ("Puzzles", "Building Sets", "Dolls", "Outdoor Play", "Board Games"),
    "Beauty": ("Skincare", "Fragrance", "Hair Care", "Makeup", "Bath"),
    "Garden": ("Tools", "Plants", "Grills", "Irrigation", "Outdoor Lighting"),
}
SUFFIXES = ("Essentials", "Premium", "Pro", "Kids", "Eco", "Refurbished", "Outlet", "Travel")
BRANDS: tuple[str, ...] = ("Acme Corp", "Globex", "Initech", "Umbrella", "Stark Industries")
BRANDS += ("Wayne Tech", "Hooli", "Vandelay", "Cyberdyne", "Wonka", "Tyrell Corp", "Soylent")
ADJECTIVES = "Compact Classic Ultra Smart Eco Pro Lite Max Urban Nordic Solid Swift".split()
COLORS = ("black", "white", "grey", "navy", "red", "green", "oak", "silver")
TAGS = ("bestseller", "new", "sale", "gift", "eco", "limited", "bundle", "clearance")
DELETERS = ("user:self", "admin:ops", "gdpr-bot", "support:tier2")
REASONS = {
    "users": ("account closed by user", "GDPR erasure request", "fraud", "duplicate account"),
    "products": ("discontinued", "duplicate listing", "supplier recall", "catalogue cleanup"),
    "orders": ("test order", "duplicate checkout", "customer request", "fraud review"),
}
PRICE_POINTS = (499, 999, 1499, 1999, 2999, 4999, 7999, 9999, 19_999, 49_999, 129_999)
