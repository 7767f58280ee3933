"""Built-in fixture texts: what voxperf synthesises when no recordings are given.

Three lengths of plain dictation (a reminder, a meeting note, an email), as the dictation audit's fixtures
``short`` and ``medium`` plus a ``long`` one. The words are chosen so a transcript can be compared
word for word: no digits, dates, abbreviations, contractions, hyphenated or compound words, brand
names or spellings a speech recogniser could write two ways, so word error rate measures the
recogniser, not its formatting.
"""

from __future__ import annotations

__all__ = ["VARIANTS"]

VARIANTS: dict[str, str] = {
    # about three seconds of speech: one sentence
    "short": "Please remind me to call the dentist tomorrow morning after breakfast.",
    # about ten seconds: two or three sentences
    "medium": (
        "I just finished the meeting with the design team. "
        "We agreed to move the launch to next week so that we have more time for testing. "
        "Please send the new plan to everyone on the team before the end of Friday."
    ),
    # about thirty seconds: a paragraph
    "long": (
        "Hello Sarah, thank you for sending the report so quickly. "
        "I read it this morning and I think the main points are clear and well written. "
        "Before we share it with the rest of the company, could you add a short section about the budget "
        "and explain why the project needs more time? "
        "I would also like to see a simple chart that shows how the number of customers has grown "
        "over the last year. "
        "If you have any questions, please call me this afternoon. "
        "I will be in the office all week, so we can also meet in person if that is easier for you. "
        "Thanks again for all your hard work."
    ),
}
