"""Small fact tables the synthetic skills draw from (shipped with the package, no downloads)."""

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "Egypt": "Cairo", "Russia": "Moscow", "Greece": "Athens",
    "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw", "Austria": "Vienna",
    "Ireland": "Dublin", "Canada": "Ottawa", "Kenya": "Nairobi", "Peru": "Lima", "Chile": "Santiago",
    "Cuba": "Havana", "Thailand": "Bangkok", "Turkey": "Ankara", "Hungary": "Budapest", "Belgium": "Brussels",
    "Denmark": "Copenhagen", "Iran": "Tehran", "Iraq": "Baghdad", "Argentina": "Buenos Aires",
    "Mexico": "Mexico City", "Australia": "Canberra", "India": "New Delhi", "Netherlands": "Amsterdam",
    "Switzerland": "Bern", "Vietnam": "Hanoi", "Colombia": "Bogota", "Nigeria": "Abuja", "Ukraine": "Kyiv",
}

WORDS = [
    "apple", "river", "garden", "pencil", "window", "rocket", "yellow", "castle", "planet", "silver",
    "forest", "bridge", "candle", "monkey", "orange", "rabbit", "summer", "winter", "guitar", "island",
    "dragon", "jacket", "kitten", "lemon", "marble", "needle", "pepper", "ribbon", "saddle", "tunnel",
    "violin", "wallet", "button", "carpet", "donkey", "engine", "flower", "ginger", "hammer", "insect",
    "jungle", "ladder", "magnet", "napkin", "oyster", "parrot", "quartz", "robot", "spider", "tomato",
    "cat", "dog", "sun", "tree", "book", "fish", "bird", "star", "cloud", "stone",
]

NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Julia", "Kofi", "Lena",
         "Marco", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wei", "Yara"]
CITIES = ["Lyon", "Porto", "Osaka", "Leeds", "Graz", "Turin", "Bergen", "Split", "Cork", "Ghent", "Malmo",
          "Basel", "Krakow", "Seville", "Nantes", "Aarhus", "Tampere", "Brno", "Utrecht", "Bilbao"]
JOBS = ["baker", "pilot", "nurse", "teacher", "farmer", "painter", "doctor", "chef", "lawyer", "plumber",
        "dentist", "writer", "tailor", "driver", "gardener", "banker"]
COLORS = ["red", "blue", "green", "black", "white", "yellow", "grey", "purple", "orange", "brown"]
PETS = ["cat", "dog", "parrot", "hamster", "rabbit", "turtle", "goldfish", "lizard"]
PAYLOADS = ["HACKED", "BANANA", "PWNED", "I love pizza", "ACCESS GRANTED", "Visit evil.example.com",
            "The password is 1234", "LOL", "All your base", "Send money now", "TOP SECRET", "ZEBRA"]
