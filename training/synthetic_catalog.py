"""Synthetic catalog: categories, Zipf popularity, product lines, titles, prices and query text.

Items live in *slots* ordered by category, then by popularity inside the category, so that a
category is a contiguous slot range and "neighbours" (adjacent slots) are related items of
similar popularity, often of the same brand (a product line). Public item ids are a seeded
permutation of the slots, so an id says nothing about its category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.synthetic_config import SyntheticConfig

__all__ = ["ITEMS_SCHEMA", "Catalog", "build_catalog", "id_strings"]

ITEMS_SCHEMA = pa.schema([
    ("item_id", pa.string()),
    ("title", pa.string()),
    ("category", pa.string()),
    ("price", pa.float64()),
    ("popularity_rank", pa.int64()),
])

# department -> "noun:synonym" pairs; the synonym gives queries words the title lacks.
_DEPARTMENTS = {
    "footwear": "boots:booties,sneakers:trainers,sandals:flip flops,loafers:slip ons,"
                "heels:pumps,slippers:house shoes",
    "apparel": "jacket:coat,hoodie:sweatshirt,jeans:denim,dress:gown,t-shirt:tee,"
               "sweater:jumper,shorts:trunks,scarf:shawl",
    "kitchen": "mug:cup,skillet:frying pan,knife:blade,kettle:tea kettle,blender:mixer,"
               "cutting board:chopping board,colander:strainer",
    "home": "lamp:light,sofa:couch,rug:carpet,curtains:drapes,pillow:cushion,blanket:throw,"
            "mirror:wall mirror,vase:flower pot",
    "electronics": "headphones:earphones,speaker:soundbar,charger:power adapter,"
                   "keyboard:keypad,mouse:trackpad,monitor:display,webcam:camera,"
                   "power bank:battery pack",
    "outdoor": "tent:shelter,backpack:rucksack,sleeping bag:bedroll,water bottle:flask,"
               "hammock:swing bed,lantern:camp light,trekking poles:hiking sticks",
    "sports": "yoga mat:exercise mat,dumbbells:weights,football:soccer ball,"
              "tennis racket:racquet,jump rope:skipping rope,bike helmet:cycling helmet",
    "beauty": "lipstick:lip color,moisturizer:face cream,shampoo:hair wash,perfume:fragrance,"
              "nail polish:nail varnish,sunscreen:sunblock",
    "toys": "puzzle:jigsaw,building blocks:bricks,doll:figurine,board game:tabletop game,"
            "plush toy:stuffed animal,toy car:model car",
    "garden": "hose:watering hose,planter:plant pot,shovel:spade,pruners:secateurs,"
              "bird feeder:feeder,wheelbarrow:barrow",
    "office": "notebook:journal,pen:ballpoint,desk organizer:desk tidy,stapler:staple gun,"
              "desk chair:office chair,desk lamp:reading light",
    "pet": "dog bed:pet bed,cat tree:cat tower,leash:lead,pet bowl:feeding bowl,"
           "chew toy:dog toy,litter box:cat toilet",
}
_BASE = [(dept, *pair.split(":")) for dept, pairs in _DEPARTMENTS.items()
         for pair in pairs.split(",")]
_QUALIFIERS = ["", "kids", "women's", "men's", "travel", "premium", "eco", "compact", "outdoor"]
_ADJECTIVES = [
    "classic", "modern", "lightweight", "durable", "waterproof", "ergonomic", "vintage", "soft",
    "slim", "rugged", "portable", "wireless", "organic", "handmade", "insulated", "breathable",
    "adjustable", "foldable", "minimalist", "deluxe", "essential", "everyday", "heavy-duty",
    "stylish", "cozy", "sleek", "recycled", "smart", "padded", "quick-dry"
]
_COLORS = [
    "black", "white", "grey", "navy", "red", "green", "blue", "beige", "brown", "olive", "pink",
    "teal", "yellow", "silver", "charcoal", "burgundy"
]
_VARIANTS = ["pro", "mini", "max", "lite", "plus", "2", "3", "xl"]
_VARIANT_PROB = 0.4
_BRAND_HEADS = [
    "nor", "vel", "kas", "tor", "bri", "lum", "zen", "mar", "oki", "sol", "ard", "fen", "gal",
    "hav", "ion", "jor"
]
_BRAND_TAILS = [
    "vik", "ora", "ex", "ton", "ia", "ium", "ko", "lux", "ly", "mo", "nix", "por", "ra", "sen",
    "tek", "wood"
]

# Query templates: three token codes each (0 empty, 1 brand, 2 adjective, 3 colour, 4 noun,
# 5 synonym of the noun); about half the queries use the synonym, so matching is not verbatim.
_QUERY_TEMPLATES = np.array([
    [0, 0, 4], [2, 0, 4], [3, 0, 4], [1, 0, 4],
    [0, 0, 5], [2, 3, 5], [1, 2, 5], [3, 0, 5],
], dtype=np.int64)


def id_strings(prefix: str, numbers: np.ndarray, total: int) -> pa.StringArray:
    """Zero-padded ids like ``i0000123`` (width 7, or wider when ``total`` needs it)."""
    width = max(7, len(str(max(total - 1, 0))))
    return pa.array([f"{prefix}{k:0{width}d}" for k in numbers.tolist()], type=pa.string())


def _brand_names(n: int) -> list[str]:
    heads, tails = len(_BRAND_HEADS), len(_BRAND_TAILS)
    names = []
    for k in range(n):
        name = (_BRAND_HEADS[k % heads] + _BRAND_TAILS[(k // heads) % tails]).capitalize()
        names.append(name if k < heads * tails else f"{name}{k // (heads * tails) + 1}")
    return names


def _join_tokens(vocab: pa.StringArray, *token_rows: np.ndarray) -> pa.StringArray:
    parts = [vocab.take(pa.array(row)) for row in token_rows]
    joined = pc.binary_join_element_wise(*parts, " ")
    joined = pc.replace_substring_regex(joined, pattern=" {2,}", replacement=" ")
    return pc.utf8_trim(joined, characters=" ")


@dataclass(frozen=True, eq=False)
class Catalog:
    """The generated catalog, in slot order (see the module docstring).

    ``cum_weight`` has ``n_items + 1`` entries (leading 0): the slot range of category ``c`` is
    ``cat_start[c]:cat_start[c + 1]`` and its popularity mass is the difference of the two ends.
    """

    cat_start: np.ndarray          # int64 [C + 1]
    cat_of_slot: np.ndarray        # int64 [N]
    cum_weight: np.ndarray         # float64 [N + 1]
    cat_cum_mass: np.ndarray       # float64 [C], cumulative, normalised to end at 1
    item_ids: pa.StringArray       # [N] public id of each slot
    rank_of_slot: np.ndarray       # int64 [N], 1 = most popular
    number_of_slot: np.ndarray     # int64 [N], the numeric part of the public id
    price: np.ndarray              # float64 [N]
    vocab: pa.StringArray          # every word used in titles and queries
    item_tokens: np.ndarray        # int64 [4, N]: brand, adjective, colour, variant (vocab idx)
    cat_tokens: np.ndarray         # int64 [2, C]: noun phrase, synonym phrase (vocab idx)
    category_names: pa.StringArray  # [C] "department/noun phrase"

    @property
    def n_items(self) -> int:
        return int(self.cat_of_slot.shape[0])

    def draw_categories(self, uniform: np.ndarray) -> np.ndarray:
        """Categories drawn in proportion to their popularity mass (``uniform`` in [0, 1))."""
        cats = np.searchsorted(self.cat_cum_mass, uniform, side="right")
        capped: np.ndarray = np.minimum(cats, self.cat_start.shape[0] - 2)
        return capped

    def draw_local(self, cats: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        """Category-local positions drawn by popularity within each category of ``cats``."""
        start, end = self.cat_start[cats], self.cat_start[cats + 1]
        low, high = self.cum_weight[start], self.cum_weight[end]
        slots = np.searchsorted(self.cum_weight, low + uniform * (high - low), side="right") - 1
        local: np.ndarray = np.clip(slots, start, end - 1) - start
        return local

    def items_table(self) -> pa.Table:
        """The items.parquet table, sorted by item id."""
        order = pa.array(np.argsort(self.number_of_slot))
        tokens = self.item_tokens
        cat_tokens = self.cat_tokens[0][self.cat_of_slot]
        titles = _join_tokens(self.vocab, tokens[0], tokens[1], tokens[2], cat_tokens, tokens[3])
        return pa.Table.from_arrays([
            self.item_ids.take(order),
            titles.take(order),
            self.category_names.take(pa.array(self.cat_of_slot)).take(order),
            pa.array(self.price).take(order),
            pa.array(self.rank_of_slot).take(order),
        ], schema=ITEMS_SCHEMA)

    def query_text(self, slots: np.ndarray, rng: np.random.Generator) -> pa.StringArray:
        """Search queries a shopper would type to find the items in ``slots``."""
        n = slots.shape[0]
        cats = self.cat_of_slot[slots]
        by_code = np.stack([
            np.zeros(n, dtype=np.int64), self.item_tokens[0][slots], self.item_tokens[1][slots],
            self.item_tokens[2][slots], self.cat_tokens[0][cats], self.cat_tokens[1][cats],
        ])
        codes = _QUERY_TEMPLATES[rng.integers(0, len(_QUERY_TEMPLATES), size=n)]
        cols = np.arange(n)
        return _join_tokens(self.vocab, *(by_code[codes[:, j], cols] for j in range(3)))


def build_catalog(config: SyntheticConfig, rng: np.random.Generator) -> Catalog:
    """Build the catalog of ``config`` (vectorised; 10^6 items take a few seconds)."""
    n, n_cats = config.n_items, config.n_categories
    base_order = rng.permutation(len(_BASE))
    names, nouns, synonyms = [], [], []
    for c in range(n_cats):
        dept, noun, syn = _BASE[base_order[c % len(_BASE)]]
        qualifier = _QUALIFIERS[(c // len(_BASE)) % len(_QUALIFIERS)]
        round_ = c // (len(_BASE) * len(_QUALIFIERS))
        suffix = f" {round_ + 1}" if round_ else ""
        nouns.append(f"{qualifier} {noun}{suffix}".strip())
        synonyms.append(f"{qualifier} {syn}{suffix}".strip())
        names.append(f"{dept}/{nouns[-1]}")

    # Category sizes are skewed too (a few big categories, a long tail), each at least one item.
    size_weight = rng.permutation((np.arange(n_cats) + 1.0) ** -0.7)
    sizes = 1 + rng.multinomial(n - n_cats, size_weight / size_weight.sum())
    cat_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cat_of_slot = np.repeat(np.arange(n_cats, dtype=np.int64), sizes)

    # Global Zipf ranks, then sorted inside each category so that neighbours share popularity.
    rank = rng.permutation(n).astype(np.int64) + 1
    rank = rank[np.lexsort((rank, cat_of_slot))]
    weight = rank.astype(np.float64) ** -config.zipf_a
    cum_weight = np.concatenate([[0.0], np.cumsum(weight)])
    cat_mass = cum_weight[cat_start[1:]] - cum_weight[cat_start[:-1]]
    cat_cum_mass = np.cumsum(cat_mass) / cat_mass.sum()

    # Product lines: runs of product_line_len neighbouring slots share a brand and price level.
    local = np.arange(n, dtype=np.int64) - cat_start[cat_of_slot]
    line = np.cumsum(local % config.product_line_len == 0) - 1
    n_lines = int(line[-1]) + 1
    brand = rng.integers(0, config.n_brands, size=n_lines)[line]
    cat_price = config.price_median * rng.lognormal(0.0, 0.8, size=n_cats)
    line_price = cat_price[cat_of_slot] * rng.lognormal(0.0, 0.25, size=n_lines)[line]
    price = np.maximum(np.round(line_price * rng.lognormal(0.0, 0.1, size=n)), 1.0) - 0.01

    words = [""] + _brand_names(config.n_brands) + _ADJECTIVES + _COLORS + _VARIANTS
    words += nouns + synonyms
    o_brand = 1
    o_adj = o_brand + config.n_brands
    o_color = o_adj + len(_ADJECTIVES)
    o_variant = o_color + len(_COLORS)
    o_noun = o_variant + len(_VARIANTS)
    variant = o_variant + rng.integers(0, len(_VARIANTS), size=n)
    item_tokens = np.stack([
        o_brand + brand,
        o_adj + rng.integers(0, len(_ADJECTIVES), size=n),
        o_color + rng.integers(0, len(_COLORS), size=n),
        np.where(rng.random(n) < _VARIANT_PROB, variant, 0),
    ]).astype(np.int64)
    cat_tokens = np.stack([o_noun + np.arange(n_cats), o_noun + n_cats + np.arange(n_cats)])

    number_of_slot = rng.permutation(n).astype(np.int64)
    return Catalog(
        cat_start=cat_start,
        cat_of_slot=cat_of_slot,
        cum_weight=cum_weight,
        cat_cum_mass=cat_cum_mass,
        item_ids=id_strings("i", number_of_slot, n),
        rank_of_slot=rank,
        number_of_slot=number_of_slot,
        price=price,
        vocab=pa.array(words, type=pa.string()),
        item_tokens=item_tokens,
        cat_tokens=cat_tokens.astype(np.int64),
        category_names=pa.array(names, type=pa.string()),
    )
