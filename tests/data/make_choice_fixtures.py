#!/usr/bin/env python3
"""Writes the multiple-choice fixtures in llama-perplexity's three formats, from tasks written
for kiln's tests (not taken from the real datasets), and, given a llama-perplexity binary and
a model, what llama.cpp answers on them:

  python3 tests/data/make_choice_fixtures.py                      # choice_hellaswag.txt, choice_winogrande.csv, choice_mc.bin
  python3 tests/data/make_choice_fixtures.py LLAMA_PERPLEXITY MODEL  # also choice_llama_smollm2.json

MODEL is SmolLM2's F16 GGUF as kiln-quantize writes it from the Hugging Face checkpoint
(`kiln-quantize .cache/models/hf/smollm2 smollm2-f16.gguf F16`); the test runs kiln on that
checkpoint, so the two engines' scores differ only by arithmetic (about 1e-3).

The JSON holds, per format, llama.cpp's per-task lines: HellaSwag and multiple choice print
the running accuracy (so each task's right or wrong follows), Winogrande both choices' scores.
"""
import json
import os
import re
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# (context, gold ending index, four endings), HellaSwag's layout.
HELLASWAG = [
    ("Baking bread: The baker mixes flour, water and yeast in a large bowl. She", 2,
     ["drives the bowl to the airport and boards a plane.", "paints the ceiling of the kitchen blue.",
      "kneads the dough on the floured table until it is smooth.", "sings to the cat about the weather in Spain."]),
    ("Washing a car: A man sprays the car with water from a hose. He", 0,
     ["scrubs the doors with a soapy sponge.", "plants tomatoes inside the engine.",
      "reads a newspaper to the tires.", "folds the car into a small box."]),
    ("Brushing teeth: A girl squeezes toothpaste onto her toothbrush. She", 1,
     ["throws the toothbrush into the garden pond.", "brushes her teeth in small circles and rinses her mouth.",
      "writes a letter with the toothpaste.", "climbs onto the roof with the tube."]),
    ("Playing the piano: A boy sits down at the piano and opens the music book. He", 3,
     ["eats the pages one by one.", "kicks the piano across the room.",
      "puts the book in the oven.", "places his fingers on the keys and begins to play."]),
    ("Tying shoes: The child crosses the two laces over each other. She", 0,
     ["pulls one lace under the other and makes two loops.", "cuts the shoes in half with scissors.",
      "throws the laces at the television.", "drinks a glass of laces."]),
    ("Making tea: A woman fills the kettle with water and switches it on. When it boils, she", 2,
     ["pours the water on the carpet.", "puts the kettle in the freezer.",
      "pours the hot water over a tea bag in a cup.", "waters the plants with cold soup."]),
    ("Painting a fence: A man opens a can of white paint and stirs it. He", 1,
     ["drinks the paint through a straw.", "dips a brush in the paint and covers the wooden boards.",
      "buries the can under the fence.", "throws the brush over the house."]),
    ("Riding a bike: The girl puts on her helmet and climbs onto the bicycle. She", 3,
     ["lies down on the grass and sleeps.", "carries the bicycle into the lake.",
      "eats the helmet for lunch.", "pushes the pedals and rides down the street."]),
    ("Cooking pasta: He drops the spaghetti into the pot of boiling water. After ten minutes he", 0,
     ["drains the pasta and adds the tomato sauce.", "mails the pot to his aunt.",
      "plants the spaghetti in the garden.", "uses the pasta to fix the car."]),
    ("Mowing the lawn: A man pulls the cord to start the lawn mower. He", 2,
     ["puts the mower in the bathtub.", "reads the mower a bedtime story.",
      "pushes the mower back and forth across the grass.", "paints the mower on the wall."]),
    ("Swimming: The swimmer stands on the block and the whistle blows. She", 1,
     ["walks home and eats dinner.", "dives into the pool and swims to the other end.",
      "climbs a tree beside the pool.", "reads the whistle a poem."]),
    ("Washing dishes: A woman fills the sink with hot soapy water. She", 3,
     ["throws the plates out of the window.", "puts the sink in the car.",
      "sleeps in the sink all afternoon.", "scrubs the plates with a sponge and rinses them."]),
    ("Building a snowman: Two children roll a big ball of snow across the yard. They", 0,
     ["lift a smaller ball on top and add a carrot nose.", "bake the snow in the oven.",
      "mail the snowball to the beach.", "paint the snow with hot coffee."]),
    ("Changing a tire: The man loosens the nuts and raises the car with a jack. He", 2,
     ["eats the jack for breakfast.", "sings to the nuts until they fly away.",
      "takes off the flat tire and puts on the spare.", "throws the car into the river."]),
    ("Planting a tree: She digs a deep hole in the garden. She", 1,
     ["fills the hole with ice cream.", "sets the young tree in the hole and fills it with soil.",
      "jumps into the hole and stays there forever.", "puts the shovel on the roof."]),
    ("Reading a book: The boy opens the book to the first chapter. He", 3,
     ["eats the cover with a spoon.", "uses the book as a boat on the lake.",
      "throws the book at the moon.", "reads the first page and turns to the next one."]),
]

# (sentence with _, choice 1, choice 2, answer 1 or 2): four or more words after the blank,
# so llama.cpp scores the words after it (its choice-word branch reads a wrong row). The
# last line is one llama.cpp's reader drops (and kiln with it).
WINOGRANDE = [
    ("The trophy did not fit in the suitcase because the _ was too big for it.", "trophy", "suitcase", 1),
    ("The trophy did not fit in the suitcase because the _ was too small for it.", "trophy", "suitcase", 2),
    ("Anna gave her coat to Maria because _ was cold and shivering outside.", "Anna", "Maria", 2),
    ("Tom could not lift the box, so he asked Jack because _ is much stronger than him.", "Tom", "Jack", 2),
    ("The ice melted quickly on the stove because the _ was very hot from cooking.", "ice", "stove", 2),
    ("The water bottle was empty but the juice bottle was full, so the _ was heavy to carry.", "water bottle", "juice bottle", 2),
    ("Sam ran faster than Ben in the race, so _ won the gold medal that day.", "Sam", "Ben", 1),
    ("The cat chased the mouse until the _ hid in a small hole in the wall.", "cat", "mouse", 2),
    ("Lisa studied hard but Kate did not, so _ passed the difficult exam easily.", "Lisa", "Kate", 1),
    ("The glass fell on the pillow and did not break because the _ was soft and thick.", "glass", "pillow", 2),
    ("The dog was wet after the rain but the cat was dry, so the _ shook water everywhere.", "dog", "cat", 1),
    ("Peter lent money to Paul because _ had lost his wallet on the bus.", "Peter", "Paul", 2),
    ("The bread was stale but the cake was fresh, so the _ went into the trash bin.", "bread", "cake", 1),
    ("Emma is taller than Zoe, so _ had to reach the top shelf for her.", "Emma", "Zoe", 1),
    ("The candle burned all night while the lamp was off, so the _ was much shorter in the morning.", "candle", "lamp", 1),
    ("The river was deep but the pond was shallow, so the children waded in the _ and played all day.", "river", "pond", 2),
    ("The last line is never read, so this _ is not a task at all.", "line", "task", 1),
]

# (question, answers, index of the right one): ARC-style questions.
MULTIPLE_CHOICE = [
    ("Which of these is a source of light?", ["a rock", "the Sun", "a shadow", "a spoon"], 1),
    ("What do plants need to make their food?", ["sunlight", "sand", "plastic", "darkness"], 0),
    ("What is the boiling point of water at sea level?", ["10 degrees Celsius", "50 degrees Celsius", "100 degrees Celsius", "1000 degrees Celsius"], 2),
    ("Which animal is a mammal?", ["a shark", "a frog", "a snake", "a whale"], 3),
    ("What force pulls objects toward the Earth?", ["gravity", "magnetism", "friction", "light"], 0),
    ("Which planet is closest to the Sun?", ["Jupiter", "Mercury", "Saturn", "Neptune"], 1),
    ("What part of the body pumps blood?", ["the lungs", "the stomach", "the heart", "the skin"], 2),
    ("Which state of matter has a fixed shape?", ["gas", "liquid", "steam", "solid"], 3),
    ("What do bees make from the nectar of flowers?", ["honey", "milk", "silk", "wax paper"], 0),
    ("How many legs does an insect have?", ["two", "six", "ten", "twelve"], 1),
    ("What is frozen water called?", ["steam", "fog", "ice", "rain"], 2),
    ("Which gas do people breathe in to live?", ["helium", "neon", "carbon monoxide", "oxygen"], 3),
]


def write_hellaswag(path):
    with open(path, "w") as f:
        for ctx, gold, endings in HELLASWAG:
            f.write("\n".join([ctx, str(gold)] + endings) + "\n")


def write_winogrande(path):
    with open(path, "w") as f:
        f.write("index,sentence,option1,option2,answer\n")  # a header line, as the published CSVs have
        for i, (sentence, c1, c2, answer) in enumerate(WINOGRANDE):
            quoted = '"' + sentence + '"' if "," in sentence else sentence
            f.write(f"{i},{quoted},{c1},{c2},{answer}\n")


def write_multiple_choice(path):
    def string(s):
        b = s.encode()
        return struct.pack("<I", len(b)) + b

    tasks = []
    for question, answers, right in MULTIPLE_CHOICE:
        body = string(question) + struct.pack("<I", len(answers)) + b"".join(string(a) for a in answers)
        body += struct.pack(f"<{len(answers)}i", *[int(i == right) for i in range(len(answers))])
        body += struct.pack("<I", 0)  # the multiple-correct list: empty
        tasks.append(body)
    offset = 4 + 4 * len(tasks)
    offsets = []
    for t in tasks:
        offsets.append(offset)
        offset += len(t)
    with open(path, "wb") as f:
        f.write(struct.pack("<I", len(tasks)) + struct.pack(f"<{len(tasks)}I", *offsets) + b"".join(tasks))


def llama_lines(binary, model, flag, data, extra=()):
    out = subprocess.run([binary, "-m", model, "-f", data, flag, "-t", "2", "-c", "2048", *extra],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if re.match(r"^\d+\t", line)]


def main():
    hs, wg, mc = (os.path.join(HERE, n) for n in ("choice_hellaswag.txt", "choice_winogrande.csv", "choice_mc.bin"))
    write_hellaswag(hs)
    write_winogrande(wg)
    write_multiple_choice(mc)
    if len(sys.argv) == 3:
        binary, model = sys.argv[1:]
        result = {"model": os.path.basename(model)}
        # running accuracy after each task -> right (1) or wrong (0)
        def outcomes(lines):
            acc = [float(l.split("\t")[1].rstrip("%")) for l in lines]
            return [round(a * (i + 1) / 100 - (acc[i - 1] * i / 100 if i else 0)) for i, a in enumerate(acc)]
        result["hellaswag_right"] = outcomes(llama_lines(binary, model, "--hellaswag", hs))
        result["multiple_choice_right"] = outcomes(llama_lines(binary, model, "--multiple-choice", mc))
        result["multiple_choice_6_right"] = outcomes(llama_lines(binary, model, "--multiple-choice", mc, ["--multiple-choice-tasks", "6"]))
        rows = [l.split() for l in llama_lines(binary, model, "--winogrande", wg)]
        result["winogrande"] = [[float(r[2]), float(r[3]), int(r[4]), int(r[5])] for r in rows]
        rows = [l.split() for l in llama_lines(binary, model, "--winogrande", wg, ["--winogrande-tasks", "5"])]
        result["winogrande_5"] = [[float(r[2]), float(r[3]), int(r[4]), int(r[5])] for r in rows]
        with open(os.path.join(HERE, "choice_llama_smollm2.json"), "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
