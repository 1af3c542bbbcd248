"""Calibration text for FP8 builds: a built-in varied set, or the user's own file.

    texts = load_calibration_texts(None, num_samples=32)          # built-in
    texts = load_calibration_texts(Path("prompts.txt"), 128)     # one prompt per line
    texts = load_calibration_texts(Path("data.jsonl"), 128)      # one JSON object per line, "text" field

The built-in set mixes prose, dialogue, code, math, structured data and several languages, so the
activation ranges it records are not those of one kind of text. HELD_OUT_TEXTS are never used for
calibration: the build's FP8 quality report measures on them. Every problem with a user's file is one
ValueError that says how to fix it.
"""
from __future__ import annotations

import json
from pathlib import Path

CALIBRATION_TEXTS: tuple[str, ...] = (
    "The river had been rising for three days, and by the morning of the fourth the ferry no longer ran. "
    "People gathered on the bank to watch the brown water carry branches, fence posts and once a whole shed.",
    "Photosynthesis converts light energy into chemical energy. In the chloroplast, water is split, oxygen is "
    "released, and the energy captured is stored in ATP and NADPH before the Calvin cycle fixes carbon dioxide.",
    "User: Can you recommend a book for a long train ride?\nAssistant: Sure! If you like mysteries, try an Agatha "
    "Christie novel; they are short, gripping and easy to pick up again after a stop.",
    "def merge_sorted(a, b):\n    result, i, j = [], 0, 0\n    while i < len(a) and j < len(b):\n        if a[i] <= "
    "b[j]:\n            result.append(a[i]); i += 1\n        else:\n            result.append(b[j]); j += 1\n"
    "    return result + a[i:] + b[j:]",
    "SELECT customer_id, COUNT(*) AS orders, SUM(total) AS revenue\nFROM orders\nWHERE created_at >= '2024-01-01'\n"
    "GROUP BY customer_id\nHAVING COUNT(*) > 5\nORDER BY revenue DESC\nLIMIT 20;",
    "Let x be a real number with x^2 - 5x + 6 = 0. Factoring gives (x - 2)(x - 3) = 0, so x = 2 or x = 3. "
    "Their sum is 5 and their product is 6, as Vieta's formulas predict.",
    '{"id": 4127, "name": "Ada Lovelace", "born": 1815, "fields": ["mathematics", "computing"], '
    '"notes": null, "active": false, "scores": [9.5, 8.75, 10.0]}',
    "Le petit village se réveillait lentement. Le boulanger ouvrait sa boutique, les enfants couraient vers "
    "l'école et, sur la place, deux vieillards discutaient déjà de la météo.",
    "Die Bahn hatte wieder einmal Verspätung. Auf dem Bahnsteig standen Pendler mit Kaffeebechern und starrten "
    "auf die Anzeigetafel, die nun zwanzig Minuten ankündigte.",
    "El mercado abre a las seis de la mañana. Los vendedores colocan naranjas, tomates y pimientos en cajas de "
    "madera mientras el olor a pan recién hecho llena la calle.",
    "春天来了，公园里的樱花都开了。很多人带着孩子来散步、拍照，湖边还有人在画画。",
    "今日は朝から雨が降っていたので、図書館で一日中本を読んでいました。静かでとても集中できました。",
    "Вечером мы собрались на кухне, пили чай и спорили о том, куда поехать летом: на море или в горы.",
    "Installation\n-----------\n1. Download the archive.\n2. Run `./configure --prefix=/usr/local`.\n"
    "3. Run `make && sudo make install`.\n4. Check the version with `tool --version`.",
    "Q: What is the capital of Australia?\nA: Canberra.\nQ: Which planet has the most moons?\nA: Saturn, with "
    "more than 140 confirmed.\nQ: Who wrote 'Pride and Prejudice'?\nA: Jane Austen.",
    "const debounce = (fn, ms) => {\n  let timer;\n  return (...args) => {\n    clearTimeout(timer);\n"
    "    timer = setTimeout(() => fn(...args), ms);\n  };\n};",
    "Shall I walk the shore at dusk, where the tide forgets its name,\nand gulls write slow white letters on a "
    "sky that burns and fades the same?",
    "Quarterly results: revenue grew 12% year over year to $4.3 billion, operating margin expanded to 18.5%, and "
    "the company raised its full-year guidance citing strong demand in cloud services.",
    "To reset the router, hold the small button on the back for ten seconds until the lights blink orange. "
    "Wait two minutes, then connect to the default network printed on the label.",
    "The mitochondrion is often called the powerhouse of the cell, but it also regulates apoptosis, stores "
    "calcium and produces heat in brown fat through uncoupling proteins.",
    "Patient reports mild headache for 3 days, no fever, no nausea. BP 128/82, HR 74. Advised hydration, "
    "rest and ibuprofen 400 mg as needed; return if symptoms worsen.",
    "#include <stdio.h>\n\nint main(void) {\n    for (int i = 1; i <= 15; i++) {\n        if (i % 15 == 0) "
    "puts(\"FizzBuzz\");\n        else if (i % 3 == 0) puts(\"Fizz\");\n        else printf(\"%d\\n\", i);\n    }\n"
    "    return 0;\n}",
    "In 1492 Columbus sailed west; in 1519 Magellan's fleet set out to circle the globe; in 1969 two astronauts "
    "walked on the Moon while a third orbited above them.",
    "| city    | population | area km2 |\n|---------|-----------:|---------:|\n| Oslo    |    709,000 |      454 |\n"
    "| Lisbon  |    545,000 |      100 |\n| Vienna  |  1,980,000 |      415 |",
    "Dear Ms. Patel,\n\nThank you for your application. We would like to invite you to an interview on Tuesday at "
    "10:00. Please let us know if this time suits you.\n\nKind regards,\nThe Hiring Team",
    "The integral of 1/(1 + x^2) from 0 to 1 equals arctan(1) - arctan(0) = pi/4, roughly 0.7854. Summing "
    "the series 1 - 1/3 + 1/5 - 1/7 + ... converges to the same value, very slowly.",
    "git checkout -b fix/login-timeout\ngit add src/auth/session.py tests/test_session.py\ngit commit -m "
    "\"Extend session timeout to 30 minutes\"\ngit push origin fix/login-timeout",
    "A good sourdough starter needs only flour, water and patience. Feed it twice a day, keep it warm, and after "
    "about a week it should double in size within six hours of feeding.",
    "ERROR 2024-05-03 14:22:17 worker-3 Connection reset by peer (errno 104); retrying in 2.0s (attempt 3/5)\n"
    "WARN  2024-05-03 14:22:19 worker-3 queue depth 1832 exceeds soft limit 1500",
    "Chess opening: 1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 4. Ba4 Nf6 5. O-O Be7. The Ruy Lopez has been played at the "
    "highest level for centuries and still leads to rich middlegames.",
    "User: Translate 'good morning, how are you?' into Italian.\nAssistant: 'Buongiorno, come stai?' For a formal "
    "setting you would say 'Buongiorno, come sta?'",
    "Numbers: 3.14159, 2.71828, 1.41421, 0.57721, 1.61803, 6.02214e23, 1.380649e-23, -273.15, 65536, 4294967296.",
)

# never used for calibration: the FP8 quality report's held-out text
HELD_OUT_TEXTS: tuple[str, ...] = (
    "The old lighthouse keeper climbed the spiral stairs every evening at sunset. He wound the clockwork, "
    "polished the great lens and watched the first beam sweep across the dark water toward the rocks.",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n\n    def pop(self):\n        if not self.items:\n"
    "            raise IndexError('pop from empty stack')\n        return self.items.pop()",
    "User: How do I boil an egg so the yolk stays soft?\nAssistant: Lower the egg into boiling water, cook it for "
    "six to seven minutes, then cool it in ice water for a minute before peeling.",
    "A train leaves the station at 9:00 travelling at 80 km/h. A second train leaves at 10:00 on the same track "
    "at 120 km/h. The second train catches up when 120(t - 1) = 80t, that is after t = 3 hours, at noon.",
    "La bibliothèque municipale organise chaque samedi un atelier de lecture pour les enfants. Les parents "
    "peuvent rester ou profiter de la matinée pour faire leurs courses au marché voisin.",
    "Glaciers store about two thirds of the world's fresh water. As they retreat, they raise sea levels, change "
    "river flows that farms depend on, and expose rock that has not seen sunlight for thousands of years.",
    '[{"sku": "A-100", "qty": 3, "price": 19.99}, {"sku": "B-250", "qty": 1, "price": 249.0}, '
    '{"sku": "C-007", "qty": 12, "price": 0.5}]',
    "Dans la cuisine, ma grand-mère préparait la confiture de prunes. Elle disait toujours que le secret, "
    "c'était de ne jamais se presser et de goûter souvent.",
)

_FILE_HELP = ('pass a UTF-8 text file with one prompt per line, or a .jsonl file with one {"text": ...} object per '
              "line, or leave out --calib-data to use the built-in set")


def load_calibration_texts(path: Path | None, num_samples: int) -> list[str]:
    """Up to `num_samples` calibration texts: the built-in set when `path` is None, else the file's first ones."""
    if num_samples < 1:
        raise ValueError(f"the number of calibration samples must be at least 1, got {num_samples}.")
    texts = list(CALIBRATION_TEXTS) if path is None else read_calibration_file(Path(path))
    return texts[:num_samples]


def read_calibration_file(path: Path) -> list[str]:
    """The prompts in `path`: one per non-blank line, or the "text" of each JSON line of a .jsonl/.json file."""
    if not path.exists():
        raise ValueError(f"calibration file {path} does not exist; {_FILE_HELP}.")
    if not path.is_file():
        raise ValueError(f"calibration file {path} is not a regular file; {_FILE_HELP}.")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"calibration file {path} is not UTF-8 text; {_FILE_HELP}.") from None
    except OSError as err:
        raise ValueError(f"calibration file {path} cannot be read ({err.strerror}); {_FILE_HELP}.") from None
    lines = [(number, line) for number, line in enumerate(content.splitlines(), 1) if line.strip()]
    if not lines:
        raise ValueError(f"calibration file {path} is empty; {_FILE_HELP}.")
    if path.suffix.lower() not in (".jsonl", ".json"):
        return [line for _, line in lines]
    texts = []
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"line {number} of calibration file {path} is not JSON; {_FILE_HELP}.") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record["text"].strip():
            raise ValueError(f'line {number} of calibration file {path} has no non-empty "text" string; '
                             f"{_FILE_HELP}.")
        texts.append(record["text"])
    return texts
