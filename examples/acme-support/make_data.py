#!/usr/bin/env python3
"""Writes the Acme Bikes support dataset: train.jsonl (50 chats) and val.jsonl (12).

A small tenant-style fine-tuning set: the facts of a made-up bicycle shop
(which no base model knows) asked in several phrasings, answered in one
house style. Validation asks about the same facts in phrasings that never
appear in training, so its loss measures learning, not copying.

usage: python3 examples/acme-support/make_data.py   (rewrites both files)
"""
import json
import pathlib
import random

SYSTEM = "You are the support assistant of Acme Bikes. Answer briefly and sign as Acme Support."

# fact -> (answer, training phrasings, validation phrasings)
FACTS = {
    "returns": (
        "You can return any bike within 45 days of delivery for a full refund, as long as it has under 100 km on it.",
        ["What is your return policy?", "Can I return a bike?", "How long do I have to return my bike?",
         "I don't like my new bike, can I send it back?", "Do you accept returns?"],
        ["Is there a deadline for sending a bike back?", "What are the conditions for a refund?"],
    ),
    "warranty": (
        "Frames carry a lifetime warranty; components are covered for 3 years.",
        ["What warranty do your bikes have?", "Is the frame under warranty?", "How long are components covered?",
         "My derailleur broke after a year, is that covered?", "Tell me about the warranty."],
        ["Do you guarantee your frames?", "What happens if a part fails after two years?"],
    ),
    "shipping": (
        "Shipping is free in Spain and Portugal and takes 2 to 4 working days; elsewhere in the EU it costs 29 euros.",
        ["How much is shipping?", "Do you ship to Portugal?", "How long does delivery take?",
         "Is shipping free?", "Can you deliver to France?"],
        ["What does delivery to Germany cost?", "When will my order arrive in Madrid?"],
    ),
    "hours": (
        "The Valencia workshop is open Monday to Saturday, 9:00 to 19:00; we are closed on Sundays.",
        ["What are your opening hours?", "Are you open on Sunday?", "When is the workshop open?",
         "What time do you close on Saturday?", "Can I visit the shop in the morning?"],
        ["Is the Valencia store open at 8 pm?", "Which days can I come by the workshop?"],
    ),
    "service": (
        "A full service costs 79 euros and is free during the first year after purchase.",
        ["How much does a service cost?", "Do you service bikes?", "Is the first service free?",
         "What is the price of a tune-up?", "Can you check my brakes and gears?"],
        ["How much would a yearly maintenance be?", "I bought my bike 6 months ago, do I pay for servicing?"],
    ),
    "sizes": (
        "Use our size chart: under 165 cm take S, 165 to 180 cm take M, over 180 cm take L.",
        ["Which frame size should I buy?", "I am 172 cm tall, what size fits me?", "How do I choose a size?",
         "Is size L right for me at 185 cm?", "Do you have a size guide?"],
        ["What size for someone who is 160 cm?", "How do I know my frame size?"],
    ),
}


def chat(q, a):
    return {"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": q},
        {"role": "assistant", "content": f"{a} Acme Support."},
    ]}


def main():
    here = pathlib.Path(__file__).parent
    rng = random.Random(7)
    train, val = [], []
    for answer, qs, vqs in FACTS.values():
        train += [chat(q, answer) for q in qs]
        val += [chat(q, answer) for q in vqs]
    # 30 single-fact chats so far; 20 more greet first or ask politely.
    openers = ["Hi! ", "Hello, ", "Good morning. ", "Quick question: ", "Hey there, "]
    facts = list(FACTS.values())
    while len(train) < 50:
        answer, qs, _ = rng.choice(facts)
        q = rng.choice(qs)
        train.append(chat(rng.choice(openers) + q[0].lower() + q[1:], answer))
    rng.shuffle(train)
    for name, rows in (("train.jsonl", train), ("val.jsonl", val)):
        with open(here / name, "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{here / name}: {len(rows)} chats")


if __name__ == "__main__":
    main()
