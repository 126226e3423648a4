/*
 * tools/cli/demo_text.h — the text `mephisto demo` counts: original prose
 * written for mephisto and placed in the public domain. Each line is sent
 * as one record; words are the runs of bytes between ASCII whitespace,
 * counted exactly as written (punctuation included), as the word-count
 * example counts them.
 */
#ifndef MPH_CLI_DEMO_TEXT_H
#define MPH_CLI_DEMO_TEXT_H

static const char mph__cli_demo_text[] =
    "The river begins as a thin cold thread of water under the snow\n"
    "and nobody who stands beside it there would call it a river at all.\n"
    "It gathers the rain from every slope it passes and the melt from every "
    "field\n"
    "and by the time it reaches the first village it has a voice of its own.\n"
    "The people of the village do not ask where the water comes from.\n"
    "They ask only whether it will be enough, and whether it will be too "
    "much,\n"
    "and they build their mills and their bridges on the answer.\n"
    "\n"
    "A stream is not a lake that happens to be moving.\n"
    "A lake can be measured once and written down in a book,\n"
    "but a stream must be measured again and again, because the water you "
    "counted\n"
    "is already gone and the water you did not count is already here.\n"
    "The miller knows this better than the surveyor does.\n"
    "He does not count the water in the river; he counts the turns of his "
    "wheel,\n"
    "and every evening he writes the number in the same worn ledger,\n"
    "and every morning he starts again from the number he wrote.\n"
    "\n"
    "When the river grows too wide for one wheel the miller builds a second "
    "one,\n"
    "and then a third, each on its own channel cut from the same water.\n"
    "Each wheel keeps its own ledger and no wheel waits for another.\n"
    "If one channel floods, the others keep turning;\n"
    "if one wheel breaks, the water of its channel is sent to the next mill\n"
    "and the ledger of the broken wheel is carried there by hand,\n"
    "so that not a single turn is counted twice and not a single turn is "
    "lost.\n"
    "\n"
    "In the town below the mills the merchants keep a great table of "
    "accounts.\n"
    "Every sack of flour that leaves a mill is written in the table under "
    "the name of its buyer,\n"
    "and every page of the table is copied each night into a second book\n"
    "that is kept in a stone house on the other side of the river.\n"
    "If the first book burns, the clerks open the second book\n"
    "and read it from the last line they trusted to the end,\n"
    "and by the next morning the table is whole again and the market opens "
    "on time.\n"
    "\n"
    "The children of the town like to stand on the bridge and drop leaves "
    "into the water.\n"
    "They race them from one side of the bridge to the other and shout the "
    "winner's name.\n"
    "A leaf that falls behind is never lost; it only arrives later,\n"
    "and the oldest child, who keeps the score, waits for every leaf before "
    "she declares the winner.\n"
    "She has learned that the race is not over when the first leaf arrives,\n"
    "but when the last leaf that was dropped has passed under the bridge.\n"
    "\n"
    "At the mouth of the river the water meets the sea and loses its name.\n"
    "The fishermen there do not know the miller or the merchants or the "
    "children,\n"
    "but they know the taste of the water, and they can tell in the spring\n"
    "how much snow there was in the mountains and how warm the summer will "
    "be.\n"
    "Everything the river carried is still in the water, counted and "
    "uncounted,\n"
    "and the sea keeps all of it, as the sea has always done.\n";

#endif
