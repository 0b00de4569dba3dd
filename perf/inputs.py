"""Benchmark inputs: varied, realistic texts of an exact token length, and their tensors.

A benchmark that sends one repeated string measures a cache and a fixed padding, not the
model. Here every text is different, is built from intent-style sentences of the kind
the CLINC150 classifier sees, and tokenizes to exactly the requested number of tokens
(special tokens included) with the model's own tokenizer, so "16 tokens" and "128
tokens" mean what they say for the ensemble and for the encoder alone.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from ._modelrepo import TEXT_INPUT
from .errors import PerfError

# Requests a user of an intent classifier would send: banking, travel, home, cars, work,
# small talk. Mixed lengths, casing and punctuation so texts do not share a shape.
SENTENCE_POOL: tuple[str, ...] = (
    "Hey, I'd like to rent a vehicle from Nov 1st to Nov 15th in Paris and I need a 15 passenger van.",
    "What's my checking account balance right now?",
    "Please transfer $250 from savings to my joint account with Maria.",
    "How do I say 'where is the train station' in Portuguese?",
    "Can you tell me if my flight to Denver is delayed?",
    "I lost my credit card somewhere near the mall, please freeze it.",
    "remind me to call the dentist at 4 pm tomorrow",
    "What's the weather going to be like in Seattle this weekend?",
    "Book a table for four at an Italian place downtown at 7:30.",
    "How many calories are in a slice of pepperoni pizza?",
    "My car is making a weird grinding noise when I brake, what could it be?",
    "When is my next oil change due?",
    "Add eggs, spinach and oat milk to my shopping list.",
    "Could you find a recipe for vegetarian lasagna that takes under an hour?",
    "Set an alarm for 6:15 am on weekdays.",
    "I want to know the exchange rate between euros and Japanese yen.",
    "Is there any way to increase my credit limit on the Visa card?",
    "Tell me a joke about programmers.",
    "Who built you and what can you do?",
    "Please connect me to a human agent, this isn't working.",
    "What's the routing number for my bank?",
    "How long should I boil an egg for a soft yolk?",
    "Turn the living room lights down to thirty percent.",
    "I need to report a fraudulent charge of $89.99 from an online store I never used.",
    "Can I bring a carry-on and a personal item on a basic economy ticket?",
    "what time does the pharmacy on 5th street close today",
    "Schedule a meeting with the design team next Thursday afternoon.",
    "How much paid time off do I have left this year?",
    "Find me the fastest route to the airport avoiding tolls.",
    "Do I need a visa to travel to Vietnam with a Canadian passport?",
    "My package was supposed to arrive yesterday, where is it?",
    "Cancel my reservation at the Grand Hotel for Friday night.",
    "What's the interest rate on a 30-year fixed mortgage these days?",
    "Can you play some relaxing jazz in the kitchen?",
    "How do I change the PIN on my debit card?",
    "Please pay the electricity bill before the due date.",
    "What is the tire pressure supposed to be for a 2018 Honda Civic?",
    "Translate 'good morning, how did you sleep' into German.",
    "How old are you, anyway?",
    "I'm feeling kind of bored, any ideas?",
    "Roll a twenty-sided die for me.",
    "Flip a coin: heads I cook, tails we order in.",
    "What's the capital of Australia? I always forget.",
    "Is my insurance going to cover a rental car after the accident?",
    "Share my current location with Jordan for the next hour.",
    "How far is it from Lyon to Geneva by train?",
    "Check whether there are any direct flights from Boston to Lisbon in March.",
    "I think someone has been using my account, I see logins from another country.",
    "Order more paper towels and dish soap, the usual brand.",
    "Can you update my address to 42 Elm Street, Apartment 3B?",
    "Why was my card declined at the grocery store this morning?",
    "What's on my calendar for the rest of the day?",
    "Let me know when my W-2 is available to download.",
    "How do I apply for a new job at the Chicago office?",
    "Start a timer for twelve minutes for the pasta.",
    "What's a good substitute for buttermilk in pancakes?",
    "Is the museum open on Mondays, and do they offer student discounts?",
    "Please text my sister that I'm running about 20 minutes late.",
    "Change the thermostat to 68 degrees before I get home.",
    "How much gas do I have left in the tank?",
    "Can I redeem my reward points for a hotel stay?",
    "The smoke detector keeps chirping, how do I change its battery?",
    "I need to split a $146 dinner bill among five friends including a 20% tip.",
    "What's the meaning of the word 'ephemeral'?",
    "Are you a robot or a real person?",
    "Thanks, that was really helpful!",
    "Never mind, forget what I just asked.",
    "Find a nearby mechanic who can look at my transmission on Saturday.",
    "How many vacation days can I roll over into next year?",
    "Please lock the front door and arm the security system.",
    "My direct deposit hasn't shown up yet; when will it post?",
    "Give me a quick summary of today's headlines about the economy.",
    "Which wine goes well with grilled salmon?",
    "How do I get a replacement for a damaged passport while abroad?",
    "I'd like to dispute a late fee on my last statement.",
    "Can you recommend a family-friendly restaurant with outdoor seating near the lake?",
    "Spell 'conscientious' for me, slowly.",
    "Is it going to rain during my morning run tomorrow?",
    "Put the kids' dentist appointment on the shared calendar for the 14th.",
    "What are the side effects of taking ibuprofen every day?",
    "Where can I find the nearest ATM that doesn't charge fees?",
    "Pause the music and turn up the volume on the TV instead.",
    "How long will it take to pay off $5,000 at 18% APR if I pay $200 a month?",
    "What's my current credit score and how can I improve it?",
    "Please make a reservation for a sushi place that takes walk-ins after 9.",
    "Tell me something interesting about octopuses.",
    "Which of my subscriptions renew this month?",
    "I want to switch my phone plan to the unlimited data option.",
    "Can you help me write an out-of-office reply for next week?",
    "Is there a carpool lane on the highway to San Jose during rush hour?",
)


@dataclass(frozen=True)
class TokenizedText:
    """One benchmark text and the exact tensors the tokenizer model would produce for it."""

    text: str
    input_ids: list[int]
    attention_mask: list[int]
    token_type_ids: list[int]


def load_tokenizer(tokenizer_json: Path) -> Tokenizer:
    """The model's tokenizer with its fixed padding/truncation turned off.

    The shipped MiniLM tokenizer.json pads and truncates to 128, which would make every
    text "128 tokens" and hide the length we are trying to control.
    """
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def exact_length_texts(tokenizer: Tokenizer, n_tokens: int, count: int, seed: int = 0) -> list[str]:
    """`count` distinct texts that each tokenize to exactly `n_tokens` tokens, specials included."""
    n_special = len(tokenizer.encode("").ids)  # [CLS] and [SEP] for BERT
    if n_tokens <= n_special:
        raise PerfError(f"n_tokens={n_tokens} leaves no room for text beside {n_special} special tokens")
    rng = random.Random(seed)
    texts: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(texts) < count:
        attempts += 1
        if attempts > 200 * count:
            raise PerfError(f"could only build {len(texts)} distinct {n_tokens}-token texts of {count}")
        # Early attempts insist on a cut at a word boundary (natural text); later ones accept
        # a cut inside a word, still re-checked, so generation always terminates.
        text = _one_exact_text(tokenizer, n_tokens, n_special, rng, word_boundary=attempts < 50 * count)
        if text is not None and text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def _one_exact_text(
    tokenizer: Tokenizer, n_tokens: int, n_special: int, rng: random.Random, word_boundary: bool
) -> str | None:
    content_tokens = n_tokens - n_special
    sentences = rng.sample(SENTENCE_POOL, len(SENTENCE_POOL))  # no sentence twice in one text
    text = sentences.pop()
    while len(tokenizer.encode(text, add_special_tokens=False).ids) < content_tokens:
        text += " " + sentences.pop()
    encoding = tokenizer.encode(text, add_special_tokens=False)
    if len(encoding.ids) > content_tokens:
        next_word, last_word = encoding.word_ids[content_tokens], encoding.word_ids[content_tokens - 1]
        if word_boundary and next_word == last_word:
            return None  # the cut would split a word: try another combination
        text = text[: encoding.offsets[content_tokens - 1][1]].rstrip()
    # Cutting can change how the tail tokenizes: trust only a fresh count.
    return text if len(tokenizer.encode(text).ids) == n_tokens else None


def tokenize(tokenizer: Tokenizer, texts: list[str]) -> list[TokenizedText]:
    """The int64 tensors the tokenizer model sends to the encoder, one text at a time."""
    tokenized = []
    for text in texts:
        encoding = tokenizer.encode(text)
        tokenized.append(TokenizedText(text, list(encoding.ids), list(encoding.attention_mask),
                                       list(encoding.type_ids)))
    return tokenized


def ensemble_input_data(texts: list[str]) -> dict:
    """perf_analyzer --input-data for the ensemble: one TEXT string per step.

    TEXT has dims [1] in a batched model, so each step holds one string; perf_analyzer's
    `-b` gathers consecutive steps into a batch.
    """
    return {"data": [{TEXT_INPUT: [text]} for text in texts]}


def encoder_input_data(tokenized: list[TokenizedText]) -> dict:
    """perf_analyzer --input-data for the encoder alone: the same texts as token tensors."""
    steps = []
    for item in tokenized:
        length = [len(item.input_ids)]
        steps.append({
            "input_ids": {"content": item.input_ids, "shape": length},
            "attention_mask": {"content": item.attention_mask, "shape": length},
            "token_type_ids": {"content": item.token_type_ids, "shape": length},
        })
    return {"data": steps}


def write_input_files(tokenizer: Tokenizer, n_tokens: int, count: int, out_dir: Path) -> dict[str, Path]:
    """Write `ensemble-<n>.json`, `encoder-<n>.json` and `texts-<n>.json`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = exact_length_texts(tokenizer, n_tokens, count)
    paths = {
        "ensemble": out_dir / f"ensemble-{n_tokens}.json",
        "encoder": out_dir / f"encoder-{n_tokens}.json",
        "texts": out_dir / f"texts-{n_tokens}.json",
    }
    paths["ensemble"].write_text(json.dumps(ensemble_input_data(texts)))
    paths["encoder"].write_text(json.dumps(encoder_input_data(tokenize(tokenizer, texts))))
    paths["texts"].write_text(json.dumps(texts, indent=1))
    return paths


# --- mixed lengths (python -m perf load) ----------------------------------------------------
#
# perf_analyzer 2.41 does not walk --input-data steps one after another across its threads.
# Measured against this server (a whitespace-only text at one step makes that step fail):
# with one synchronous thread per request in flight (its default), every thread starts at
# step 0 and moves C steps on per request at concurrency C, so with N steps only the steps
# k*C mod N are ever sent (64 texts at concurrency 16: 4 of them), and all threads send the
# same step at about the same time. With `--async --max-threads 1` (what perf.load uses)
# requests take the steps in turn. A prime N (> C) covers every step in both modes.

def special_token_count(tokenizer: Tokenizer) -> int:
    """Tokens the tokenizer adds to every text ([CLS] and [SEP] for BERT)."""
    return len(tokenizer.encode("").ids)


def prime_at_least(number: int) -> int:
    candidate = max(number, 2)
    while any(candidate % divisor == 0 for divisor in range(2, int(candidate ** 0.5) + 1)):
        candidate += 1
    return candidate


def mixed_length_texts(tokenizer: Tokenizer, max_tokens: int, seed: int = 0) -> list[str]:
    """Texts of every length from one word to `max_tokens` tokens (specials included), shuffled.

    The shortest holds one content token; the longest fills the model's maximum exactly, so
    nothing is truncated. Extra texts of random lengths bring the count to a prime (see the
    note above) so perf_analyzer sends them all.
    """
    shortest = special_token_count(tokenizer) + 1
    if max_tokens < shortest:
        raise PerfError(f"max_tokens={max_tokens} leaves no room for a word beside the special tokens")
    rng = random.Random(seed)
    lengths = list(range(shortest, max_tokens + 1))
    lengths += [rng.randint(shortest, max_tokens) for _ in range(prime_at_least(len(lengths)) - len(lengths))]
    rng.shuffle(lengths)  # neighbouring requests differ in length, so dynamic batches mix them
    texts: list[str] = []
    for index, n_tokens in enumerate(lengths):
        # A seed per slot: the same length twice still gives two different texts.
        candidates = exact_length_texts(tokenizer, n_tokens, count=4, seed=seed * 10_007 + index)
        texts.append(next((text for text in candidates if text not in texts), candidates[0]))
    return texts


def write_mixed_input_files(tokenizer: Tokenizer, max_tokens: int, out_dir: Path) -> dict[str, Path]:
    """Write `ensemble-mixed-<max>.json` and `texts-mixed-<max>.json`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = mixed_length_texts(tokenizer, max_tokens)
    paths = {
        "ensemble": out_dir / f"ensemble-mixed-{max_tokens}.json",
        "texts": out_dir / f"texts-mixed-{max_tokens}.json",
    }
    paths["ensemble"].write_text(json.dumps(ensemble_input_data(texts)))
    paths["texts"].write_text(json.dumps(texts, indent=1))
    return paths
