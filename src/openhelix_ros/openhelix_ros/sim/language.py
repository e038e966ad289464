"""Instructions for the 34 tasks, written for this project (not CALVIN's annotation files).

Three disjoint sets:
* ``EVALUATION``: one standard instruction per task, used by the evaluation protocol;
* ``TRAINING``: other phrasings, for training data;
* ``ENRICHED``: CALVIN-E style paraphrases (at least 10 per task), for robustness to wording.
"""

from __future__ import annotations

from openhelix_ros.sim.tasks import COLOURS, TASKS, check_task_names


def _block_phrases(colour: str) -> dict[str, list[str]]:
    b = f"the {colour} block"
    return {
        "rotate_right": [f"rotate {b} to the right", f"turn {b} clockwise", f"twist {b} to the right"],
        "rotate_left": [f"rotate {b} to the left", f"turn {b} counterclockwise", f"twist {b} to the left"],
        "push_right": [f"push {b} to the right", f"slide {b} right", f"nudge {b} towards the right"],
        "push_left": [f"push {b} to the left", f"slide {b} left", f"nudge {b} towards the left"],
        "lift_table": [f"lift {b} from the table", f"pick up {b} from the table",
                       f"grasp {b} on the table and raise it"],
        "lift_slider": [f"lift {b} from the sliding cabinet", f"pick up {b} from the shelf",
                        f"take {b} out of the cabinet"],
        "lift_drawer": [f"lift {b} from the drawer", f"pick up {b} inside the drawer",
                        f"take {b} out of the drawer"],
    }


def _block_enriched(colour: str) -> dict[str, list[str]]:
    b, c = f"the {colour} block", colour
    return {
        "rotate_right": [f"spin {b} clockwise a bit", f"give {b} a quarter turn to the right",
                         f"rotate the {c} cube rightwards", f"turn the {c} one to the right",
                         f"change the {c} block's heading clockwise", f"twist the {c} piece clockwise",
                         f"grab {b} and turn it right", f"make {b} face more to the right",
                         f"rotate {b} clockwise on the spot", f"swivel the {c} block to the right",
                         f"yaw {b} to the right without moving it away"],
        "rotate_left": [f"spin {b} counterclockwise a bit", f"give {b} a quarter turn to the left",
                        f"rotate the {c} cube leftwards", f"turn the {c} one to the left",
                        f"change the {c} block's heading counterclockwise", f"twist the {c} piece anticlockwise",
                        f"grab {b} and turn it left", f"make {b} face more to the left",
                        f"rotate {b} anticlockwise on the spot", f"swivel the {c} block to the left",
                        f"yaw {b} to the left without moving it away"],
        "push_right": [f"shove {b} rightwards", f"move {b} to the right side by pushing",
                       f"sweep the {c} cube to the right", f"push the {c} one over to the right",
                       f"slide the {c} piece along the table to the right", f"give {b} a push to the right",
                       f"drive {b} right across the desk", f"displace {b} towards the right",
                       f"push {b} a few centimetres right", f"bump the {c} block rightwards"],
        "push_left": [f"shove {b} leftwards", f"move {b} to the left side by pushing",
                      f"sweep the {c} cube to the left", f"push the {c} one over to the left",
                      f"slide the {c} piece along the table to the left", f"give {b} a push to the left",
                      f"drive {b} left across the desk", f"displace {b} towards the left",
                      f"push {b} a few centimetres left", f"bump the {c} block leftwards"],
        "lift_table": [f"raise {b} off the desk", f"hold {b} up in the air", f"pick the {c} cube up",
                       f"grab the {c} one from the table top", f"take {b} off the table",
                       f"lift the {c} piece up from the desk", f"get hold of {b} and lift it",
                       f"elevate {b} from the tabletop", f"pick up the {c} block lying on the table",
                       f"grasp and lift the {c} cube from the desk"],
        "lift_slider": [f"raise {b} off the shelf", f"grab the {c} cube in the cabinet",
                        f"pick the {c} one up from behind the sliding door", f"remove {b} from the cupboard",
                        f"lift the {c} piece out of the cabinet", f"get {b} from the shelf",
                        f"take the {c} cube off the cabinet shelf", f"retrieve {b} from the sliding cabinet",
                        f"pick up the {c} block stored in the cabinet", f"grasp {b} on the shelf and lift it"],
        "lift_drawer": [f"raise {b} out of the drawer", f"grab the {c} cube in the drawer",
                        f"pick the {c} one up from the open drawer", f"remove {b} from the drawer",
                        f"lift the {c} piece out of the drawer", f"get {b} from inside the drawer",
                        f"take the {c} cube from the drawer", f"retrieve {b} from the drawer",
                        f"pick up the {c} block lying in the drawer", f"grasp {b} in the drawer and lift it"],
    }


_GENERAL = {
    "move_slider_left": (["slide the door to the left"],
                         ["push the sliding door to the left", "move the sliding door left"],
                         ["shift the cabinet door leftwards", "slide the cupboard door to the left side",
                          "move the slider all the way left", "push the door of the cabinet left",
                          "open the right side of the cabinet by sliding the door left",
                          "drag the sliding panel to the left", "slide the panel left",
                          "move the cabinet's sliding door to the left", "shove the door to the left",
                          "take the sliding door over to the left"]),
    "move_slider_right": (["slide the door to the right"],
                          ["push the sliding door to the right", "move the sliding door right"],
                          ["shift the cabinet door rightwards", "slide the cupboard door to the right side",
                           "move the slider all the way right", "push the door of the cabinet right",
                           "open the left side of the cabinet by sliding the door right",
                           "drag the sliding panel to the right", "slide the panel right",
                           "move the cabinet's sliding door to the right", "shove the door to the right",
                           "take the sliding door over to the right"]),
    "open_drawer": (["open the drawer"], ["pull the drawer open", "pull out the drawer"],
                    ["slide the drawer out", "get the drawer open", "pull the handle to open the drawer",
                     "draw the drawer towards you", "open up the drawer under the desk",
                     "make the drawer open", "extend the drawer", "yank the drawer open gently",
                     "grab the drawer handle and pull", "pull the desk drawer out"]),
    "close_drawer": (["close the drawer"], ["push the drawer shut", "push in the drawer"],
                     ["slide the drawer back in", "get the drawer closed", "shut the drawer under the desk",
                      "push the drawer all the way in", "close up the drawer", "make the drawer closed",
                      "retract the drawer", "press the drawer shut", "push the open drawer closed",
                      "slide the desk drawer shut"]),
    "place_in_slider": (["put the block in the sliding cabinet"],
                        ["place the grasped block into the cabinet", "store the block on the shelf"],
                        ["set the block down inside the cabinet", "drop the block on the cabinet shelf",
                         "put what you hold into the cupboard", "place the object on the shelf",
                         "put the block away in the cabinet", "deposit the block behind the sliding door",
                         "lay the block on the shelf", "leave the block in the cabinet",
                         "place the cube into the sliding cabinet", "stow the block in the cupboard"]),
    "place_in_drawer": (["put the block in the drawer"],
                        ["place the grasped block into the drawer", "store the block in the drawer"],
                        ["set the block down inside the drawer", "drop the block into the drawer",
                         "put what you hold into the drawer", "place the object in the open drawer",
                         "put the block away in the drawer", "deposit the block in the drawer",
                         "lay the block in the drawer", "leave the block in the drawer",
                         "place the cube into the drawer", "stow the block in the drawer"]),
    "push_into_drawer": (["push the block into the drawer"],
                         ["sweep the block off the table into the drawer", "slide the block into the drawer"],
                         ["get the block from the table into the drawer", "move the cube into the open drawer",
                          "push the object on the desk into the drawer", "shove the block into the drawer",
                          "make the block end up in the drawer", "transfer the block into the drawer",
                          "bring the table block into the drawer", "put the block from the desk in the drawer",
                          "tip the block into the drawer", "send the block into the drawer"]),
    "stack_block": (["stack the blocks"], ["put the block on top of another block", "stack the block you hold"],
                    ["place the block onto the other block", "build a tower of two blocks",
                     "set the block down on another block", "pile the block on top of the other one",
                     "stack the cube on a cube", "put one block on the other",
                     "make a stack with the blocks", "place the held block on a block",
                     "balance the block on another", "put the block on the other block"]),
    "unstack_block": (["take the top block off the stack"], ["unstack the blocks", "remove the block from the stack"],
                      ["take the stacked block down", "lift the upper block off and put it on the table",
                       "separate the stacked blocks", "dismantle the tower", "take the block off the other block",
                       "unpile the blocks", "put the top block back on the table",
                       "break up the stack", "remove the upper cube", "take apart the block stack"]),
    "turn_on_lightbulb": (["turn on the light bulb"], ["switch on the lightbulb", "move the switch to turn the bulb on"],
                          ["make the yellow lamp light up", "light the bulb", "switch the lamp on",
                           "push the switch so the bulb glows", "turn the lamp on",
                           "get the lightbulb shining", "flip the switch on", "activate the lightbulb",
                           "power up the light bulb", "slide the switch to the on side"]),
    "turn_off_lightbulb": (["turn off the light bulb"], ["switch off the lightbulb", "move the switch to turn the bulb off"],
                           ["make the yellow lamp go dark", "put out the bulb", "switch the lamp off",
                            "push the switch so the bulb stops glowing", "turn the lamp off",
                            "get the lightbulb dark", "flip the switch off", "deactivate the lightbulb",
                            "power down the light bulb", "slide the switch to the off side"]),
    "turn_on_led": (["turn on the green light"], ["press the button to turn on the led", "switch on the green led"],
                    ["make the green lamp light up", "light the green led", "push the button so the led glows",
                     "press the button once to get the green light on", "activate the green light",
                     "turn the led on", "get the green light shining", "power up the green led",
                     "hit the button to switch the green light on", "push down the button, green light on"]),
    "turn_off_led": (["turn off the green light"], ["press the button to turn off the led", "switch off the green led"],
                     ["make the green lamp go dark", "put out the green led", "push the button so the led stops glowing",
                      "press the button once to get the green light off", "deactivate the green light",
                      "turn the led off", "get the green light dark", "power down the green led",
                      "hit the button to switch the green light off", "push down the button, green light off"]),
}

_BLOCK_TASK_KEY = {"rotate_{c}_block_right": "rotate_right", "rotate_{c}_block_left": "rotate_left",
                   "push_{c}_block_right": "push_right", "push_{c}_block_left": "push_left",
                   "lift_{c}_block_table": "lift_table", "lift_{c}_block_slider": "lift_slider",
                   "lift_{c}_block_drawer": "lift_drawer"}


def _build() -> tuple[dict, dict, dict]:
    evaluation, training, enriched = {}, {}, {}
    for colour in COLOURS:
        basic, extra = _block_phrases(colour), _block_enriched(colour)
        for pattern, key in _BLOCK_TASK_KEY.items():
            task = pattern.format(c=colour)
            evaluation[task] = basic[key][0]
            training[task] = basic[key][1:]
            enriched[task] = extra[key]
    for task, (ev, tr, en) in _GENERAL.items():
        evaluation[task], training[task], enriched[task] = ev[0], tr, en
    return ({t: evaluation[t] for t in TASKS}, {t: training[t] for t in TASKS}, {t: enriched[t] for t in TASKS})


EVALUATION, TRAINING, ENRICHED = _build()


def evaluation_instruction(task: str) -> str:
    check_task_names([task])
    return EVALUATION[task]


def task_for_instruction(instruction: str) -> str:
    """The task an instruction from any of the three sets belongs to (ValueError if none)."""
    text = " ".join(str(instruction).lower().split())
    if not text:
        raise ValueError("empty instruction")
    for task in TASKS:
        if text == EVALUATION[task] or text in TRAINING[task] or text in ENRICHED[task]:
            return task
    raise ValueError(f"instruction {instruction!r} is not one of this project's task instructions")
