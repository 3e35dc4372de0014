"""Names and message texts drawn at random from a seed, so that no submission can hard-code them.

One seed per run: pytest prints it in its header (`chat seed: N`), every failure report
repeats it, and `--seed N` gives it back, so a failure replays with exactly the same
names and texts. Each check draws from its own generator, seeded with the run's seed
and the check's id: what one check types does not depend on which other checks ran,
in what order, or on which xdist worker.

    words = Words(seed=1234, scope="tests/test_chat.py::test_x[05]")
    words.name("alice")   # 'Noor41': the same name every time this check asks for "alice"
    words.text()          # 'seven quiet lanterns drift': a new text at each call
"""

import random
import secrets

# Valid on every stage: letters and digits only (stage 03 on allows [A-Za-z0-9_-]{1,32}).
FIRST_NAMES = """
    ada aiko amara anil arjun astrid bea bilal bruno chen chiara dara dmitri elif emeka
    esme farid femi freya goran hana hugo idris ines ivo jana jonas kai kalani kenji lale
    leon lina luka maja malik mateo mei mira nadia nico noor olga omar oskar priya quinn
    rafa rania ravi rosa sami sana sora tariq tomas uma vera wren xena yara yusuf zain zoe
""".split()

# Plain words that no check looks for (no "left", "joined", "welcome", "error", ...).
WORDS = """
    amber apple basil bright brook candle cedar clever copper cosy crisp daisy distant
    drift early ember fern fresh garden gentle ginger golden harbour hazel honey island
    jade kettle lantern lemon linen maple meadow mellow misty moss nutmeg ocean olive
    orchard paper pebble pepper plum quiet quince rain river saffron sage shore silver
    slow spruce stone summer swift thistle tide timber tulip valley velvet violet walnut
    warm willow winter yellow
""".split()


def new_seed():
    return secrets.randbelow(1_000_000)


class Words:
    def __init__(self, seed, scope):
        self.random = random.Random(f"{seed}/{scope}")
        self.observers_random = random.Random(f"{seed}/{scope}/observers")  # a str seed is hashed the same way on every run
        self.by_role = {}
        self.taken = set()  # names compare without case (stage 05 does), texts exactly
        self.texts = set()

    def name(self, role):
        """The user name this check uses for `role` ("alice", "user17", ...): random, stable, unique."""
        if role not in self.by_role:
            while (name := self.fresh_name()).lower() in self.taken:
                pass
            self.taken.add(name.lower())
            self.by_role[role] = name
        return self.by_role[role]

    def observer_name(self, role):
        """A name for an observer (tests/harness.py, Observers): drawn from a generator of its own,
        so that the check's own names and texts are the same with observers or without."""
        role = ("observer", role)  # never the same as a check's own role of that name
        if role not in self.by_role:
            while (name := f"{self.observers_random.choice(FIRST_NAMES)}{self.observers_random.randrange(10, 1000)}"
                   ).lower() in self.taken:
                pass
            self.taken.add(name.lower())
            self.by_role[role] = name
        return self.by_role[role]

    def fresh_name(self):
        first = self.random.choice(FIRST_NAMES)
        first = first.capitalize() if self.random.random() < 0.5 else first
        return f"{first}{self.random.randrange(10, 1000)}"  # 60 names x 990 numbers: crowds of 1,000 fit

    def text(self, words=3):
        """A new message text of `words` random words (never the same twice in one check)."""
        while (text := " ".join(self.random.choices(WORDS, k=words))) in self.texts:
            pass
        self.texts.add(text)
        return text


class RoleNames(Words):
    """For the site's recordings (tests/record.py): each role is its own name, so pages read "alice" and "bob"."""

    def __init__(self):
        super().__init__(seed=0, scope="recordings")

    def name(self, role):
        return role
