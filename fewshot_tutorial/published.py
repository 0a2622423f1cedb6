"""Published Omniglot accuracies of the book's methods, quoted with the protocol behind each.

Quoted, not re-measured: each row names the paper and the table its numbers come from
(the keys are the book's bibliography keys), and the protocol, so a reader sees which
comparison with the book's own numbers is like for like. ``None`` marks a setting the
book does not quote (not reported, or not checked against the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

SETTINGS: tuple[tuple[int, int], ...] = ((5, 1), (5, 5), (20, 1), (20, 5))
"""(way, shot) of the columns of Omniglot tables: 5-way 1-shot, 5-way 5-shot, 20-way 1-shot, 20-way 5-shot."""


@dataclass(frozen=True)
class PublishedRow:
    """One method's published Omniglot accuracies (%), in the order of :data:`SETTINGS`."""

    method: str
    cite: str  # bibliography key
    table: str
    accuracy: tuple[float | None, float | None, float | None, float | None]
    protocol: str

    def at(self, n_way: int, n_shot: int) -> float | None:
        """The accuracy (%) for ``n_way``-way ``n_shot``-shot, or ``None`` if not quoted."""
        return dict(zip(SETTINGS, self.accuracy)).get((n_way, n_shot))


# The common protocol of these papers (Vinyals et al. 2016): 1,200 characters for training,
# the other 423 for testing, each rotated by 0/90/180/270 degrees into 4 classes.
_VINYALS = "1,200 training / 423 test characters, rotations as new classes"
OMNIGLOT_PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow("Siamese (Koch et al.'s net)", "vinyals2016matching", "Table 1",
                 (97.3, 98.4, 88.1, 97.0), f"{_VINYALS}; re-implemented and fine-tuned by Vinyals et al."),
    PublishedRow("Matching network", "vinyals2016matching", "Table 1",
                 (98.1, 98.9, 93.8, 98.5), _VINYALS),
    PublishedRow("ProtoNet", "snell2017prototypical", "Table 1",
                 (98.8, 99.7, 96.0, 98.9), f"{_VINYALS}; 60-way training episodes"),
    PublishedRow("MAML", "finn2017maml", "Table 1",
                 (98.7, 99.9, 95.8, 98.9), f"{_VINYALS}; transductive batch norm"),
    PublishedRow("first-order MAML", "nichol2018reptile", "Table 2",
                 (98.3, 99.2, None, None), f"{_VINYALS}; transductive batch norm"),
    PublishedRow("Reptile", "nichol2018reptile", "Table 2",
                 (95.39, 98.90, None, None), f"{_VINYALS}; not transductive"),
    PublishedRow("Meta-SGD", "li2017metasgd", "Table 1",
                 (99.53, 99.93, 95.93, 98.97), _VINYALS),
)


def published_row(method: str) -> PublishedRow:
    """The row of :data:`OMNIGLOT_PUBLISHED` for ``method``.

    Raises:
        KeyError: no such row; the message lists the rows.
    """
    for row in OMNIGLOT_PUBLISHED:
        if row.method == method:
            return row
    raise KeyError(f"no published row {method!r}; rows: {', '.join(r.method for r in OMNIGLOT_PUBLISHED)}")
