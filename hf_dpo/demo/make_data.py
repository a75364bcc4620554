"""Build the preference data of the embedded CPU demo: short factual questions answered in one sentence.

Each row pairs a question with a *chosen* reply that states the answer in one short sentence ("The capital of France
is Paris.") and a *rejected* reply that wraps the same sentence in chatter: a greeting, filler, a second sentence
("Great question! The capital of France is Paris. I hope that helps!"). Both state the same correct answer, so the
preference is about form, not facts; every row lists its accepted answers, so a generated reply can be checked for
both (:mod:`hf_dpo.demo.checks`: one sentence, and the answer in it).

``bare_qa/`` holds the same questions with the bare answer as the chosen reply ("Paris"): the earlier demo, kept to
show what DPO does with it (it learns to answer bare, and a bare answer is often a wrong one for a 135M model: the
sentence that cues its recall is gone; docs/quickstart.md, "What the demo does").

The facts live in this file, grouped by category; each category also holds several ways to ask its question and
several statements of the answer. :func:`build_splits` turns them into a deterministic, stratified train/test split.
Regenerate ``train.jsonl`` and ``test.jsonl`` next to this file, and in ``bare_qa/``, with::

    python -m hf_dpo.demo.make_data
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from hf_dpo.demo.checks import MAX_WORDS, bare_answer, one_sentence, states_answer

TEST_SIZE = 80
HERE = Path(__file__).resolve().parent
BARE_FOLDER = HERE / "bare_qa"  # the same questions, the bare answer chosen: the earlier demo
Style = Literal["sentence", "bare"]  # what the chosen reply is: the one-sentence statement, or the answer alone


class Fact(NamedTuple):
    """One fact: the subject that fills the category's question templates, the answer and accepted variants.

    A subject with a ``|`` fills two slots: ``"a spider|legs"`` gives ``{x}`` = "a spider" and ``{y}`` = "legs".
    """

    subject: str
    answer: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Category:
    """A group of facts asked the same way.

    ``questions`` and ``statements`` are ``str.format`` templates over ``{x}``/``{X}`` (the subject, ``{X}``
    capitalised), ``{y}`` (the optional second slot) and ``{a}``/``{A}`` (the answer, ``{A}`` capitalised).
    ``notes`` are filler sentences that add words to a rejected reply but no facts.
    """

    name: str
    questions: tuple[str, ...]
    statements: tuple[str, ...]
    notes: tuple[str, ...]
    facts: tuple[Fact, ...]


# --------------------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------------------

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
_ONES += ("thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_words(n: int) -> str:
    """Spell out 0 <= n < 1000 in English ("twenty-four", "three hundred sixty-five")."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words supports 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    hundreds, rest = divmod(n, 100)
    head = f"{_ONES[hundreds]} hundred"
    return head if rest == 0 else f"{head} {number_words(rest)}"


def _number_aliases(n: int) -> tuple[str, ...]:
    words = number_words(n)
    aliases = [words]
    if " hundred " in words:  # British style: "three hundred and sixty-five"
        aliases.append(words.replace(" hundred ", " hundred and "))
    if "-" in words:
        aliases.append(words.replace("-", " "))
    return tuple(aliases)


def _counts(*rows: tuple[str, int]) -> tuple[Fact, ...]:
    return tuple(Fact(subject, str(n), _number_aliases(n)) for subject, n in rows)


# --------------------------------------------------------------------------------------------------------------
# Fact tables
# --------------------------------------------------------------------------------------------------------------

_GEO_NOTES = (
    "It is one of the basic facts of world geography.",
    "This often comes up in geography quizzes.",
    "I hope that helps with your question.",
)

_USA = ("the United States", "USA", "US", "U.S.", "U.S.A.", "United States of America", "America")

CATEGORIES: tuple[Category, ...] = (
    Category(
        name="capitals",
        questions=(
            "What is the capital of {x}?",
            "What is the capital city of {x}?",
            "Which city is the capital of {x}?",
            "Name the capital of {x}.",
        ),
        statements=("The capital of {x} is {a}.", "{a} is the capital city of {x}.", "{X} has {a} as its capital."),
        notes=(*_GEO_NOTES, "A capital city is usually where a country's government sits."),
        facts=(
            Fact("France", "Paris"),
            Fact("Germany", "Berlin"),
            Fact("Italy", "Rome"),
            Fact("Spain", "Madrid"),
            Fact("Japan", "Tokyo"),
            Fact("China", "Beijing", ("Peking",)),
            Fact("Russia", "Moscow"),
            Fact("the United Kingdom", "London"),
            Fact("England", "London"),
            Fact("Egypt", "Cairo"),
            Fact("Greece", "Athens"),
            Fact("Portugal", "Lisbon"),
            Fact("Ireland", "Dublin"),
            Fact("Norway", "Oslo"),
            Fact("Sweden", "Stockholm"),
            Fact("Finland", "Helsinki"),
            Fact("Denmark", "Copenhagen"),
            Fact("Poland", "Warsaw"),
            Fact("Austria", "Vienna"),
            Fact("Hungary", "Budapest"),
            Fact("the Czech Republic", "Prague"),
            Fact("Canada", "Ottawa"),
            Fact("the United States", "Washington, D.C.", ("Washington", "Washington DC", "Washington D.C.")),
            Fact("Mexico", "Mexico City"),
            Fact("Argentina", "Buenos Aires"),
            Fact("Peru", "Lima"),
            Fact("Cuba", "Havana"),
            Fact("India", "New Delhi"),
            Fact("Thailand", "Bangkok"),
            Fact("South Korea", "Seoul"),
            Fact("Indonesia", "Jakarta"),
            Fact("Kenya", "Nairobi"),
            Fact("Turkey", "Ankara"),
            Fact("Iran", "Tehran", ("Teheran",)),
            Fact("Iraq", "Baghdad"),
            Fact("Australia", "Canberra"),
            Fact("New Zealand", "Wellington"),
            Fact("Belgium", "Brussels"),
            Fact("Vietnam", "Hanoi"),
            Fact("the Philippines", "Manila"),
            Fact("Saudi Arabia", "Riyadh"),
            Fact("Brazil", "Brasília", ("Brasilia",)),
            Fact("Ukraine", "Kyiv", ("Kiev",)),
            Fact("Romania", "Bucharest"),
            Fact("Iceland", "Reykjavík", ("Reykjavik",)),
            Fact("Venezuela", "Caracas"),
            Fact("Pakistan", "Islamabad"),
            Fact("Afghanistan", "Kabul"),
            Fact("Syria", "Damascus"),
            Fact("Chile", "Santiago"),
            Fact("Colombia", "Bogotá", ("Bogota",)),
            Fact("the Netherlands", "Amsterdam"),
            Fact("Nigeria", "Abuja"),
            Fact("Wales", "Cardiff"),
            Fact("North Korea", "Pyongyang"),
            Fact("Ethiopia", "Addis Ababa"),
            Fact("Morocco", "Rabat"),
            Fact("Malaysia", "Kuala Lumpur"),
            Fact("Bulgaria", "Sofia"),
            Fact("Serbia", "Belgrade"),
            Fact("Croatia", "Zagreb"),
            Fact("Lebanon", "Beirut"),
            Fact("Jamaica", "Kingston"),
            Fact("Uruguay", "Montevideo"),
            Fact("Qatar", "Doha"),
            Fact("Nepal", "Kathmandu"),
            Fact("Scotland", "Edinburgh"),
        ),
    ),
    Category(
        name="languages",
        questions=(
            "What language is mainly spoken in {x}?",
            "What is the main language of {x}?",
            "Which language do most people in {x} speak?",
            "What language do people in {x} speak?",
        ),
        statements=(
            "The main language of {x} is {a}.",
            "Most people in {x} speak {a}.",
            "In {x}, people mostly speak {a}.",
        ),
        notes=(*_GEO_NOTES, "Many countries have more than one language, but this is the main one."),
        facts=(
            Fact("France", "French"),
            Fact("Germany", "German"),
            Fact("Italy", "Italian"),
            Fact("Spain", "Spanish", ("Castilian",)),
            Fact("Japan", "Japanese"),
            Fact("China", "Chinese", ("Mandarin", "Mandarin Chinese")),
            Fact("Russia", "Russian"),
            Fact("Brazil", "Portuguese"),
            Fact("Portugal", "Portuguese"),
            Fact("Mexico", "Spanish"),
            Fact("Argentina", "Spanish"),
            Fact("Greece", "Greek"),
            Fact("the Netherlands", "Dutch"),
            Fact("Sweden", "Swedish"),
            Fact("Norway", "Norwegian"),
            Fact("Denmark", "Danish"),
            Fact("Poland", "Polish"),
            Fact("Turkey", "Turkish"),
            Fact("Hungary", "Hungarian"),
            Fact("Egypt", "Arabic"),
            Fact("Saudi Arabia", "Arabic"),
            Fact("South Korea", "Korean"),
            Fact("Thailand", "Thai"),
            Fact("Vietnam", "Vietnamese"),
            Fact("Iran", "Persian", ("Farsi",)),
            Fact("Austria", "German"),
            Fact("the Czech Republic", "Czech"),
            Fact("Ukraine", "Ukrainian"),
            Fact("Romania", "Romanian"),
            Fact("Australia", "English"),
            Fact("England", "English"),
            Fact("the United States", "English"),
            Fact("Colombia", "Spanish"),
            Fact("Cuba", "Spanish"),
            Fact("Finland", "Finnish"),
            Fact("Israel", "Hebrew"),
            Fact("Indonesia", "Indonesian", ("Bahasa Indonesia",)),
            Fact("Bulgaria", "Bulgarian"),
            Fact("Serbia", "Serbian"),
            Fact("Croatia", "Croatian"),
            Fact("Slovakia", "Slovak", ("Slovakian",)),
            Fact("Iceland", "Icelandic"),
            Fact("Chile", "Spanish"),
            Fact("Peru", "Spanish"),
            Fact("Venezuela", "Spanish"),
            Fact("New Zealand", "English"),
            Fact("Scotland", "English"),
            Fact("Iraq", "Arabic"),
            Fact("Syria", "Arabic"),
            Fact("Morocco", "Arabic"),
            Fact("Cambodia", "Khmer"),
            Fact("Mongolia", "Mongolian"),
            Fact("Nepal", "Nepali", ("Nepalese",)),
            Fact("Bangladesh", "Bengali", ("Bangla",)),
            Fact("Armenia", "Armenian"),
            Fact("Albania", "Albanian"),
            Fact("Estonia", "Estonian"),
            Fact("Lithuania", "Lithuanian"),
            Fact("Latvia", "Latvian"),
        ),
    ),
    Category(
        name="currencies",
        questions=(
            "What is the currency of {x}?",
            "What currency is used in {x}?",
            "Which currency do people use in {x}?",
            "What is the name of the money used in {x}?",
        ),
        statements=(
            "The currency of {x} is the {a}.",
            "People in {x} pay with the {a}.",
            "In {x}, the currency is the {a}.",
        ),
        notes=(*_GEO_NOTES, "Prices there are written in this currency."),
        facts=(
            Fact("Japan", "yen", ("Japanese yen",)),
            Fact("the United Kingdom", "pound", ("pound sterling", "sterling", "British pound", "pounds")),
            Fact("the United States", "dollar", ("US dollar", "U.S. dollar", "United States dollar", "dollars")),
            Fact("India", "rupee", ("Indian rupee", "rupees")),
            Fact("China", "yuan", ("renminbi", "Chinese yuan")),
            Fact("Russia", "ruble", ("rouble", "Russian ruble", "rubles")),
            Fact("Mexico", "peso", ("Mexican peso", "pesos")),
            Fact("Switzerland", "franc", ("Swiss franc", "francs")),
            Fact("Germany", "euro", ("euros",)),
            Fact("France", "euro", ("euros",)),
            Fact("Italy", "euro", ("euros",)),
            Fact("Spain", "euro", ("euros",)),
            Fact("Greece", "euro", ("euros",)),
            Fact("Ireland", "euro", ("euros",)),
            Fact("the Netherlands", "euro", ("euros",)),
            Fact("Canada", "dollar", ("Canadian dollar", "dollars")),
            Fact("Australia", "dollar", ("Australian dollar", "dollars")),
            Fact("South Korea", "won", ("South Korean won", "Korean won")),
            Fact("Brazil", "real", ("Brazilian real", "reais")),
            Fact("Thailand", "baht", ("Thai baht",)),
            Fact("Sweden", "krona", ("Swedish krona", "kronor")),
            Fact("Poland", "złoty", ("zloty", "Polish złoty", "Polish zloty")),
            Fact("Turkey", "lira", ("Turkish lira",)),
            Fact("South Africa", "rand", ("South African rand",)),
            Fact("Egypt", "pound", ("Egyptian pound",)),
            Fact("Vietnam", "dong", ("Vietnamese dong", "đồng")),
            Fact("Indonesia", "rupiah", ("Indonesian rupiah",)),
            Fact("Nigeria", "naira", ("Nigerian naira",)),
            Fact("Norway", "krone", ("Norwegian krone", "kroner")),
            Fact("Denmark", "krone", ("Danish krone", "kroner")),
            Fact("Argentina", "peso", ("Argentine peso", "pesos")),
            Fact("the Philippines", "peso", ("Philippine peso", "piso", "pesos")),
            Fact("Portugal", "euro", ("euros",)),
            Fact("Austria", "euro", ("euros",)),
            Fact("Belgium", "euro", ("euros",)),
            Fact("Finland", "euro", ("euros",)),
            Fact("Saudi Arabia", "riyal", ("Saudi riyal",)),
            Fact("Israel", "shekel", ("new shekel", "Israeli new shekel", "shekels")),
            Fact("Pakistan", "rupee", ("Pakistani rupee", "rupees")),
            Fact("New Zealand", "dollar", ("New Zealand dollar", "dollars")),
            Fact("Singapore", "dollar", ("Singapore dollar", "dollars")),
            Fact("Hungary", "forint", ("Hungarian forint",)),
        ),
    ),
    Category(
        name="opposites",
        questions=(
            "What is the opposite of {x}?",
            'What is the opposite of the word "{x}"?',
            'Which word means the opposite of "{x}"?',
            "Give the antonym of {x}.",
        ),
        statements=(
            'The opposite of "{x}" is "{a}".',
            "{A} is the opposite of {x}.",
            'The antonym of "{x}" is "{a}".',
        ),
        notes=(
            "Opposites are a handy way to build vocabulary.",
            "The two words mean contrasting things.",
            "I hope that helps with your English.",
        ),
        facts=(
            Fact("hot", "cold"),
            Fact("big", "small", ("little",)),
            Fact("fast", "slow"),
            Fact("happy", "sad", ("unhappy",)),
            Fact("wet", "dry"),
            Fact("full", "empty"),
            Fact("open", "closed", ("shut",)),
            Fact("rich", "poor"),
            Fact("strong", "weak"),
            Fact("early", "late"),
            Fact("thick", "thin"),
            Fact("wide", "narrow"),
            Fact("high", "low"),
            Fact("loud", "quiet", ("soft",)),
            Fact("clean", "dirty"),
            Fact("good", "bad"),
            Fact("black", "white"),
            Fact("heavy", "light"),
            Fact("long", "short"),
            Fact("deep", "shallow"),
            Fact("true", "false"),
            Fact("alive", "dead"),
            Fact("cheap", "expensive", ("dear",)),
            Fact("sharp", "blunt", ("dull",)),
            Fact("empty", "full"),
            Fact("inside", "outside"),
            Fact("first", "last"),
            Fact("north", "south"),
            Fact("east", "west"),
            Fact("win", "lose"),
            Fact("easy", "difficult", ("hard",)),
            Fact("young", "old"),
            Fact("beautiful", "ugly"),
            Fact("friend", "enemy", ("foe",)),
            Fact("day", "night"),
            Fact("up", "down"),
            Fact("yes", "no"),
            Fact("always", "never"),
            Fact("love", "hate"),
            Fact("push", "pull"),
            Fact("buy", "sell"),
            Fact("left", "right"),
            Fact("arrive", "leave", ("depart",)),
            Fact("victory", "defeat"),
            Fact("tight", "loose"),
            Fact("smooth", "rough"),
            Fact("polite", "rude", ("impolite",)),
            Fact("above", "below", ("beneath", "under")),
            Fact("before", "after"),
            Fact("question", "answer"),
            Fact("give", "take"),
            Fact("ancient", "modern"),
            Fact("entrance", "exit"),
            Fact("minimum", "maximum"),
            Fact("male", "female"),
            Fact("positive", "negative"),
            Fact("plus", "minus"),
            Fact("odd", "even"),
            Fact("asleep", "awake"),
            Fact("success", "failure"),
            Fact("increase", "decrease"),
            Fact("private", "public"),
            Fact("possible", "impossible"),
            Fact("legal", "illegal"),
            Fact("top", "bottom"),
        ),
    ),
    Category(
        name="plurals",
        questions=(
            "What is the plural of {x}?",
            'What is the plural form of the word "{x}"?',
            'How do you write "{x}" in the plural?',
            "Give the plural of {x}.",
        ),
        statements=('The plural of "{x}" is "{a}".', "The plural form of {x} is {a}.", "One {x}, two {a}."),
        notes=(
            "Some English plurals are irregular, so they are worth memorising.",
            "English plurals do not always just add an s.",
            "I hope that helps with your English.",
        ),
        facts=(
            Fact("child", "children"),
            Fact("mouse", "mice"),
            Fact("man", "men"),
            Fact("woman", "women"),
            Fact("tooth", "teeth"),
            Fact("foot", "feet"),
            Fact("goose", "geese"),
            Fact("person", "people", ("persons",)),
            Fact("cat", "cats"),
            Fact("dog", "dogs"),
            Fact("box", "boxes"),
            Fact("baby", "babies"),
            Fact("leaf", "leaves"),
            Fact("knife", "knives"),
            Fact("wife", "wives"),
            Fact("wolf", "wolves"),
            Fact("city", "cities"),
            Fact("bus", "buses", ("busses",)),
            Fact("fox", "foxes"),
            Fact("church", "churches"),
            Fact("potato", "potatoes"),
            Fact("tomato", "tomatoes"),
            Fact("ox", "oxen"),
            Fact("sheep", "sheep"),
            Fact("deer", "deer"),
            Fact("party", "parties"),
            Fact("story", "stories"),
            Fact("house", "houses"),
            Fact("apple", "apples"),
            Fact("book", "books"),
            Fact("glass", "glasses"),
            Fact("dish", "dishes"),
            Fact("hero", "heroes"),
            Fact("life", "lives"),
            Fact("half", "halves"),
            Fact("shelf", "shelves"),
            Fact("toy", "toys"),
            Fact("key", "keys"),
            Fact("berry", "berries"),
            Fact("lady", "ladies"),
            Fact("louse", "lice"),
            Fact("cactus", "cacti", ("cactuses",)),
            Fact("car", "cars"),
            Fact("tree", "trees"),
            Fact("flower", "flowers"),
            Fact("chair", "chairs"),
            Fact("girl", "girls"),
            Fact("boy", "boys"),
            Fact("bird", "birds"),
            Fact("horse", "horses"),
            Fact("table", "tables"),
            Fact("star", "stars"),
            Fact("bench", "benches"),
            Fact("watch", "watches"),
            Fact("kiss", "kisses"),
            Fact("wish", "wishes"),
            Fact("country", "countries"),
            Fact("family", "families"),
            Fact("monkey", "monkeys"),
            Fact("day", "days"),
            Fact("photo", "photos"),
            Fact("piano", "pianos"),
            Fact("calf", "calves"),
            Fact("thief", "thieves"),
        ),
    ),
    Category(
        name="chemical_symbols",
        questions=(
            "What is the chemical symbol for {x}?",
            "What is the symbol of the element {x}?",
            "Which chemical symbol stands for {x}?",
            "Give the chemical symbol of {x}.",
        ),
        statements=("The chemical symbol for {x} is {a}.", "{X} has the chemical symbol {a}.", "{X} is written {a}."),
        notes=(
            "You can find it on any periodic table.",
            "Chemical symbols are one or two letters long.",
            "This is a basic fact of chemistry.",
        ),
        facts=(
            Fact("hydrogen", "H"),
            Fact("helium", "He"),
            Fact("carbon", "C"),
            Fact("nitrogen", "N"),
            Fact("oxygen", "O"),
            Fact("sodium", "Na"),
            Fact("iron", "Fe"),
            Fact("gold", "Au"),
            Fact("silver", "Ag"),
            Fact("copper", "Cu"),
            Fact("lead", "Pb"),
            Fact("potassium", "K"),
            Fact("calcium", "Ca"),
            Fact("chlorine", "Cl"),
            Fact("sulfur", "S"),
            Fact("zinc", "Zn"),
            Fact("mercury", "Hg"),
            Fact("neon", "Ne"),
            Fact("magnesium", "Mg"),
            Fact("aluminium", "Al"),
            Fact("silicon", "Si"),
            Fact("tin", "Sn"),
            Fact("uranium", "U"),
            Fact("phosphorus", "P"),
            Fact("fluorine", "F"),
            Fact("lithium", "Li"),
            Fact("platinum", "Pt"),
            Fact("iodine", "I"),
            Fact("nickel", "Ni"),
            Fact("argon", "Ar"),
            Fact("boron", "B"),
            Fact("beryllium", "Be"),
            Fact("chromium", "Cr"),
            Fact("cobalt", "Co"),
            Fact("manganese", "Mn"),
            Fact("titanium", "Ti"),
            Fact("tungsten", "W"),
            Fact("radon", "Rn"),
            Fact("krypton", "Kr"),
            Fact("xenon", "Xe"),
            Fact("bromine", "Br"),
            Fact("arsenic", "As"),
            Fact("barium", "Ba"),
            Fact("plutonium", "Pu"),
            Fact("radium", "Ra"),
            Fact("selenium", "Se"),
        ),
    ),
    Category(
        name="counts",
        questions=(
            "How many {y} does {x} have?",
            "{X} has how many {y}?",
            "Tell me how many {y} {x} has.",
            "What is the number of {y} that {x} has?",
        ),
        statements=("{X} has {a} {y}.", "The number of {y} {x} has is {a}.", "{X} has exactly {a} {y}."),
        notes=("You can check it by counting.", "This is a simple fact worth remembering.", "I hope that helps!"),
        facts=_counts(
            ("a spider|legs", 8),
            ("an insect|legs", 6),
            ("an ant|legs", 6),
            ("a dog|legs", 4),
            ("a cow|legs", 4),
            ("a bird|legs", 2),
            ("an octopus|arms", 8),
            ("a triangle|sides", 3),
            ("a square|sides", 4),
            ("a rectangle|sides", 4),
            ("a pentagon|sides", 5),
            ("a hexagon|sides", 6),
            ("an octagon|sides", 8),
            ("a week|days", 7),
            ("a year|months", 12),
            ("a day|hours", 24),
            ("an hour|minutes", 60),
            ("a minute|seconds", 60),
            ("a leap year|days", 366),
            ("a common year|days", 365),
            ("a year|weeks", 52),
            ("a decade|years", 10),
            ("a century|years", 100),
            ("a dollar|cents", 100),
            ("a dozen|items", 12),
            ("a bicycle|wheels", 2),
            ("a tricycle|wheels", 3),
            ("a car|wheels", 4),
            ("a standard guitar|strings", 6),
            ("the solar system|planets", 8),
            ("the English alphabet|letters", 26),
            ("a standard piano|keys", 88),
            ("a rainbow|colours", 7),
            ("a cube|faces", 6),
            ("a chessboard|squares", 64),
            ("a standard deck of playing cards|cards", 52),
            ("a soccer team|players on the field", 11),
            ("a haiku|lines", 3),
            ("a sonnet|lines", 14),
            ("the human heart|chambers", 4),
        ),
    ),
    Category(
        name="country_of_city",
        questions=(
            "In which country is {x}?",
            "Which country is {x} in?",
            "{X} is a city in which country?",
            "Name the country where the city of {x} is.",
        ),
        statements=("{X} is in {a}.", "{X} is a city in {a}.", "You will find {x} in {a}."),
        notes=(*_GEO_NOTES, "It is one of the best-known cities in the country."),
        facts=(
            Fact("Sydney", "Australia"),
            Fact("Melbourne", "Australia"),
            Fact("Toronto", "Canada"),
            Fact("Vancouver", "Canada"),
            Fact("Montreal", "Canada"),
            Fact("Rio de Janeiro", "Brazil"),
            Fact("São Paulo", "Brazil"),
            Fact("Mumbai", "India"),
            Fact("Bangalore", "India"),
            Fact("Barcelona", "Spain"),
            Fact("Seville", "Spain"),
            Fact("Venice", "Italy"),
            Fact("Milan", "Italy"),
            Fact("Florence", "Italy"),
            Fact("Naples", "Italy"),
            Fact("Munich", "Germany"),
            Fact("Hamburg", "Germany"),
            Fact("Istanbul", "Turkey", ("Türkiye",)),
            Fact("Shanghai", "China"),
            Fact("Osaka", "Japan"),
            Fact("Kyoto", "Japan"),
            Fact("Los Angeles", "United States", _USA),
            Fact("Chicago", "United States", _USA),
            Fact("New York City", "United States", _USA),
            Fact("San Francisco", "United States", _USA),
            Fact("Marseille", "France"),
            Fact("Lyon", "France"),
            Fact("Porto", "Portugal"),
            Fact("Kraków", "Poland"),
            Fact("Casablanca", "Morocco"),
            Fact("Johannesburg", "South Africa"),
            Fact("Cape Town", "South Africa"),
            Fact("Auckland", "New Zealand"),
            Fact("Dubai", "United Arab Emirates", ("UAE", "the UAE", "U.A.E.")),
            Fact("Rotterdam", "the Netherlands", ("Netherlands", "Holland")),
            Fact("Geneva", "Switzerland"),
            Fact("Zurich", "Switzerland"),
            Fact("Salzburg", "Austria"),
            Fact("Busan", "South Korea", ("Korea", "Republic of Korea")),
            Fact("Mecca", "Saudi Arabia"),
        ),
    ),
    Category(
        name="continents",
        questions=(
            "Which continent is {x} in?",
            "On which continent is {x}?",
            "{X} is on which continent?",
            "Name the continent where {x} is.",
        ),
        statements=("{X} is in {a}.", "{X} is located on the continent of {a}.", "{X} lies in {a}."),
        notes=(*_GEO_NOTES, "There are seven continents in total."),
        facts=(
            Fact("Kenya", "Africa"),
            Fact("Egypt", "Africa"),
            Fact("Nigeria", "Africa"),
            Fact("Ghana", "Africa"),
            Fact("Ethiopia", "Africa"),
            Fact("Morocco", "Africa"),
            Fact("South Africa", "Africa"),
            Fact("Brazil", "South America"),
            Fact("Argentina", "South America"),
            Fact("Peru", "South America"),
            Fact("Chile", "South America"),
            Fact("Colombia", "South America"),
            Fact("Venezuela", "South America"),
            Fact("Uruguay", "South America"),
            Fact("France", "Europe"),
            Fact("Germany", "Europe"),
            Fact("Italy", "Europe"),
            Fact("Spain", "Europe"),
            Fact("Poland", "Europe"),
            Fact("Sweden", "Europe"),
            Fact("Norway", "Europe"),
            Fact("Portugal", "Europe"),
            Fact("Ireland", "Europe"),
            Fact("Greece", "Europe"),
            Fact("Japan", "Asia"),
            Fact("China", "Asia"),
            Fact("India", "Asia"),
            Fact("Thailand", "Asia"),
            Fact("Vietnam", "Asia"),
            Fact("South Korea", "Asia"),
            Fact("Nepal", "Asia"),
            Fact("Canada", "North America"),
            Fact("Mexico", "North America"),
            Fact("the United States", "North America"),
            Fact("the South Pole", "Antarctica"),
        ),
    ),
    Category(
        name="authors",
        questions=(
            "Who wrote {x}?",
            "Who is the author of {x}?",
            "Which writer wrote {x}?",
            "Name the author of {x}.",
        ),
        statements=("{X} was written by {a}.", "{a} wrote {x}.", "The author of {x} is {a}."),
        notes=(
            "It is one of the most famous works of literature.",
            "It is still widely read today.",
            "I hope that helps!",
        ),
        facts=(
            Fact("Romeo and Juliet", "William Shakespeare", ("Shakespeare",)),
            Fact("Hamlet", "William Shakespeare", ("Shakespeare",)),
            Fact("Macbeth", "William Shakespeare", ("Shakespeare",)),
            Fact("the novel 1984", "George Orwell", ("Orwell",)),
            Fact("Animal Farm", "George Orwell", ("Orwell",)),
            Fact("the Harry Potter books", "J. K. Rowling", ("J.K. Rowling", "JK Rowling", "Rowling")),
            Fact("Pride and Prejudice", "Jane Austen", ("Austen",)),
            Fact("The Adventures of Tom Sawyer", "Mark Twain", ("Twain",)),
            Fact("Don Quixote", "Miguel de Cervantes", ("Cervantes",)),
            Fact("War and Peace", "Leo Tolstoy", ("Tolstoy",)),
            Fact("The Great Gatsby", "F. Scott Fitzgerald", ("Scott Fitzgerald", "Fitzgerald")),
            Fact("Moby-Dick", "Herman Melville", ("Melville",)),
            Fact("Oliver Twist", "Charles Dickens", ("Dickens",)),
            Fact("A Christmas Carol", "Charles Dickens", ("Dickens",)),
            Fact("The Hobbit", "J. R. R. Tolkien", ("J.R.R. Tolkien", "JRR Tolkien", "Tolkien")),
            Fact("The Lord of the Rings", "J. R. R. Tolkien", ("J.R.R. Tolkien", "JRR Tolkien", "Tolkien")),
            Fact("Frankenstein", "Mary Shelley", ("Shelley",)),
            Fact("Dracula", "Bram Stoker", ("Stoker",)),
            Fact("On the Origin of Species", "Charles Darwin", ("Darwin",)),
            Fact("the Odyssey", "Homer"),
            Fact("the Iliad", "Homer"),
            Fact("the Sherlock Holmes stories", "Arthur Conan Doyle", ("Conan Doyle", "Sir Arthur Conan Doyle")),
            Fact("Alice's Adventures in Wonderland", "Lewis Carroll", ("Carroll",)),
            Fact("To Kill a Mockingbird", "Harper Lee", ("Lee",)),
            Fact("Little Women", "Louisa May Alcott", ("Alcott",)),
            Fact("Les Misérables", "Victor Hugo", ("Hugo",)),
            Fact("Crime and Punishment", "Fyodor Dostoevsky", ("Dostoevsky", "Dostoyevsky")),
            Fact("The Old Man and the Sea", "Ernest Hemingway", ("Hemingway",)),
            Fact("The Catcher in the Rye", "J. D. Salinger", ("J.D. Salinger", "Salinger")),
            Fact("The Divine Comedy", "Dante Alighieri", ("Dante",)),
        ),
    ),
)

# Verbose wrappers around a category statement ``{s}`` and filler ``{n}``; each gives one to three sentences.
REJECTED_TEMPLATES: tuple[str, ...] = (
    "Great question! {s}",
    "Sure, I'd be happy to help. {s} {n}",
    "That would be {a}. {s}",
    "{s} {n}",
    "{s} Let me know if you have any other questions!",
    "Of course! {s} {n}",
    "Good question. {s}",
    "The answer is {a}. {s}",
    "Let me think about that. {s}",
    "{s} I hope this helps!",
)


# --------------------------------------------------------------------------------------------------------------
# Rows and splits
# --------------------------------------------------------------------------------------------------------------


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fields(fact: Fact) -> dict[str, str]:
    x, _, y = fact.subject.partition("|")
    return {"x": x, "X": _capitalise(x), "y": y, "a": fact.answer, "A": _capitalise(fact.answer)}


def _statement_and_rejected(
    category: Category, fact: Fact, fields: dict[str, str], rng: random.Random
) -> tuple[str, str]:
    """One statement of the answer, and a chatty reply around that same statement."""
    statement = _capitalise(rng.choice(category.statements).format(**fields))
    note = rng.choice(category.notes)
    reply = rng.choice(REJECTED_TEMPLATES).format(s=statement, n=note, a=fact.answer)
    # an answer ending in "." ("Washington, D.C.") ends its sentence with that full stop
    return statement.replace("..", "."), _capitalise(reply.replace("..", "."))


def make_row(category: Category, fact: Fact, rng: random.Random, style: Style = "sentence") -> dict:
    """One preference row for ``fact``, with a question phrasing and replies drawn from ``rng``; the chosen reply is
    the statement alone (``style="sentence"``) or the bare answer (``"bare"``). Both styles draw the same numbers, so
    their rows share questions and rejected replies."""
    fields = _fields(fact)
    question = _capitalise(rng.choice(category.questions).format(**fields))
    statement, rejected = _statement_and_rejected(category, fact, fields, rng)
    return {
        "prompt": [{"role": "user", "content": question}],
        "chosen": [{"role": "assistant", "content": statement if style == "sentence" else fact.answer}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "answers": [fact.answer, *fact.aliases],
        "category": category.name,
    }


def _test_quota(sizes: dict[str, int], test_size: int) -> dict[str, int]:
    """Per-category test counts proportional to size (largest remainder), at least one per category."""
    total = sum(sizes.values())
    exact = {name: test_size * n / total for name, n in sizes.items()}
    quota = {name: max(1, int(share)) for name, share in exact.items()}
    by_remainder = sorted(sizes, key=lambda name: (quota[name] - exact[name], name))
    i = 0
    while sum(quota.values()) < test_size:
        quota[by_remainder[i % len(by_remainder)]] += 1
        i += 1
    while sum(quota.values()) > test_size:  # only when many tiny categories were rounded up to one
        name = max(quota, key=lambda k: (quota[k], k))
        quota[name] -= 1
    return quota


def build_splits(
    seed: int = 0, test_size: int = TEST_SIZE, style: Style = "sentence"
) -> tuple[list[dict], list[dict]]:
    """Deterministic (train, test) rows: ``test_size`` test rows stratified by category, the rest for training."""
    rng = random.Random(seed)
    per_category = {}
    for category in CATEGORIES:
        rows = [make_row(category, fact, rng, style) for fact in category.facts]
        rng.shuffle(rows)
        per_category[category.name] = rows
    quota = _test_quota({name: len(rows) for name, rows in per_category.items()}, test_size)
    train: list[dict] = []
    test: list[dict] = []
    for name, rows in per_category.items():
        if not 0 < quota[name] < len(rows):
            raise ValueError(f"category {name!r} with {len(rows)} rows cannot be in both splits")
        test += rows[: quota[name]]
        train += rows[quota[name] :]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def check_rows(rows: list[dict], style: Style = "sentence") -> None:
    """Raise ValueError unless every question is asked once, both replies state an accepted answer, and only the
    chosen one has the taught form (one sentence of at most MAX_WORDS - 3 words, or the bare answer)."""
    questions = [row["prompt"][0]["content"] for row in rows]
    duplicates = {q for q in questions if questions.count(q) > 1}
    if duplicates:
        raise ValueError(f"duplicate questions: {sorted(duplicates)}")
    taught = one_sentence if style == "sentence" else bare_answer
    for row in rows:
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        if not (states_answer(chosen, row["answers"]) and states_answer(rejected, row["answers"])):
            raise ValueError(f"a reply lacks the answer: {row}")
        if not taught(chosen, row["answers"]) or taught(rejected, row["answers"]):
            raise ValueError(f"the chosen reply lacks the taught form, or the rejected one has it: {row}")
        if style == "sentence" and len(chosen.split()) > MAX_WORDS - 3:  # room to spare for the model's wording
            raise ValueError(f"chosen reply longer than {MAX_WORDS - 3} words: {row}")


def write_jsonl(rows: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def main() -> None:
    for style, folder in (("sentence", HERE), ("bare", BARE_FOLDER)):
        train, test = build_splits(style=style)
        check_rows(train + test, style)
        folder.mkdir(exist_ok=True)
        write_jsonl(train, folder / "train.jsonl")
        write_jsonl(test, folder / "test.jsonl")
        print(f"wrote {len(train)} train and {len(test)} test rows to {folder}")


if __name__ == "__main__":
    main()
