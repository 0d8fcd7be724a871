"""Integer attributes that must follow the pruned sizes (``num_heads``, ``groups``...).

Python code reads sizes from module attributes (``view(B, N, self.num_heads, -1)``),
which pruning the weights does not change. While tracing, every size literal an op
received (a ``view`` shape, a ``split`` list, a conv's ``groups``) is recorded with
the channel dims it sized, together with the dims each module produced. Here a
module's int (or int tuple) attributes are matched against those sizes, so that
apply can rewrite them. A match is only made to dims that can actually be pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from cpd.apply.modules import has_fixer, traced_attrs
from cpd.groups.model_scan import int_attrs, modules
from cpd.groups.rules.registry import Binding
from cpd.groups.space import Dim, Space, Tree

ForcedKey = tuple[str, str, str, int]
"""(module, owner, attribute, list index or -1): an attribute the rehearsal found
must follow given dims (see :mod:`cpd.groups.repair`)."""


@dataclass
class AttrBinding:
    """``module.attr`` follows ``trees``: element i's new value is the new size of
    ``trees[i]`` (every candidate tree in that list must agree)."""

    module: str
    attr: str
    trees: list[list[Tree]]
    container: str  # "int", "tuple" or "list"
    literal: bool = True  # matched an op's size literal (not a guess from produced dims)
    owner: str = ""  # "" = the module itself; "config" = its (Hugging Face) config object
    index: int = -1  # >= 0: the attribute is a list/tuple and only this element follows

    def to_json(self) -> dict:
        return {"module": self.module, "attr": self.attr, "container": self.container,
                "trees": [[t.to_json() for t in c] for c in self.trees],
                "owner": self.owner, "index": self.index}

    @staticmethod
    def from_json(d: dict) -> "AttrBinding":
        trees = [[Tree.from_json(t) for t in c] for c in d["trees"]]
        return AttrBinding(d["module"], d["attr"], trees, d["container"],
                           owner=d.get("owner", ""), index=int(d.get("index", -1)))


def resolve_bindings(
    model: nn.Module,
    literals: list[Binding],
    produced: dict[str, list[list[int]]],
    space: Space,
    frozen: dict[int, str],
    relabel: dict[int, int] | None,
    forced: dict[ForcedKey, list[Dim]] | None = None,
    consumed: dict[str, list[list[int]]] | None = None,
) -> tuple[list[AttrBinding], list[tuple[Binding, int]]]:
    """Match module attributes to the sizes of prunable dims (see module docstring).

    ``forced`` attributes follow the given dims whatever the matching says (none:
    the attribute keeps its value). ``consumed`` holds, per module, the dims of the
    tensors it received: an attribute no literal or produced dim explains may
    describe its input (``self.hidden_size`` compared with ``hidden_size_output``).
    Returns the attribute bindings, and the elements ``(binding, i)`` of required
    literals that no attribute can carry (their dims must be frozen).
    """
    out, unmet = _match(model, literals, produced, space, frozen, relabel, consumed or {})
    if not forced:
        return out, unmet
    out = [b for b in out if (b.module, b.owner, b.attr, b.index) not in forced]
    for (module, owner, attr, index), dims in forced.items():
        trees = [t for d in dims if (t := _live_tree(space, d, frozen, relabel)) is not None]
        if trees:
            out.append(AttrBinding(module, attr, [trees], "int", True, owner=owner, index=index))
    return out, unmet


def _live_tree(space: Space, dim: Dim, frozen: dict[int, str],
               relabel: dict[int, int] | None) -> Tree | None:
    t = space.tree(dim)
    if not any(leaf not in frozen for leaf in t.leaves()):
        return None
    return t if relabel is None else _relabel(t, relabel)


def _match(
    model: nn.Module,
    literals: list[Binding],
    produced: dict[str, list[list[int]]],
    space: Space,
    frozen: dict[int, str],
    relabel: dict[int, int] | None,
    consumed: dict[str, list[list[int]]],
) -> tuple[list[AttrBinding], list[tuple[Binding, int]]]:
    mods = modules(model)

    def live(dim: list[int]) -> Tree | None:
        return _live_tree(space, dim, frozen, relabel)

    by_mod: dict[str, list[Binding]] = {}
    for b in literals:
        by_mod.setdefault(b.module, []).append(b)
    out: list[AttrBinding] = []
    unmet: list[tuple[Binding, int]] = []
    for name in sorted(set(by_mod) | set(produced) | set(consumed)):
        m = mods.get(name)
        if m is None:
            continue
        attrs = int_attrs(m)
        allowed = traced_attrs(m)
        if allowed is not None:
            attrs = {k: v for k, v in attrs.items() if k in allowed}
        lits = by_mod.get(name, [])
        # Known module types re-derive sizes from their weights: only their literal
        # args (a conv's groups) are bound, never guesses from produced dims.
        dims = [] if has_fixer(m) else produced.get(name, [])
        inputs = [] if has_fixer(m) else consumed.get(name, [])
        for attr, val in attrs.items():
            if isinstance(val, int):
                cands, literal = _int_candidates(val, lits, dims, space, live)
                if not cands:  # the width the module was given, if exactly one fits
                    cands = _int_candidates(val, [], inputs, space, live)[0]
                    cands = cands if len(cands) == 1 else []
                if cands:
                    out.append(AttrBinding(name, attr, [cands], "int", literal))
                continue
            for b in lits:
                if tuple(val) == b.value:
                    trees = [live(d) for d in b.dims]
                    if any(t is not None for t in trees):
                        full = [[t] if t is not None else [Tree("leaf", v)]
                                for t, v in zip(trees, b.value)]
                        kind = "tuple" if isinstance(val, tuple) else "list"
                        out.append(AttrBinding(name, attr, full, kind))
                        break
        if allowed is None:  # known modules handle their own literals
            # Config attributes only stand in for literals the module's own
            # attributes do not explain (a config is shared: bind it sparingly).
            own = {v for v in attrs.values() if isinstance(v, int)}
            free = [Binding(b.module, tuple(v for v in b.value if v not in own),
                            [d for v, d in zip(b.value, b.dims) if v not in own], b.required)
                    for b in lits]
            out += _config_bindings(name, m, free, live)
            unmet += _unmet(lits, {**attrs, **config_ints(m)}, live)
        else:
            unmet += [(b, i) for b, i in _unmet(lits, attrs, live) if _traced(b, allowed, attrs)]
    return out, unmet


def config_ints(m: nn.Module) -> dict[str, object]:
    """Int attributes of a Hugging Face style ``config`` (prefixed), list elements flattened."""
    cfg = getattr(m, "config", None)
    if cfg is None or isinstance(cfg, nn.Module) or not hasattr(cfg, "__dict__"):
        return {}
    out: dict[str, object] = {}
    for k, v in int_attrs(cfg).items():
        if isinstance(v, int):
            out[f"config.{k}"] = v
        else:
            out.update({f"config.{k}[{i}]": x for i, x in enumerate(v)})  # type: ignore[arg-type]
    return out


def _config_bindings(name: str, m: nn.Module, lits: list[Binding], live) -> list[AttrBinding]:  # noqa: ANN001
    """Bind config ints (and unambiguous list elements) to literal sizes seen in ``m``.

    Only literals count here (never guesses from produced dims): a config is shared
    by every layer, so a wrong binding would spread. Apply sets a shared config
    attribute only when every binding to it agrees on the new value.
    """
    cfg = getattr(m, "config", None)
    if cfg is None or isinstance(cfg, nn.Module) or not hasattr(cfg, "__dict__"):
        return []
    out: list[AttrBinding] = []
    for attr, val in int_attrs(cfg).items():
        elems = [(-1, val)] if isinstance(val, int) else list(enumerate(val))  # type: ignore[arg-type]
        for idx, v in elems:
            if idx >= 0 and list(val).count(v) > 1:  # type: ignore[arg-type]
                continue  # [32, 32]: which element the literal meant is unknowable
            trees = _literal_trees(v, lits, live)
            if trees:
                out.append(AttrBinding(name, attr, [trees], "int", True,
                                       owner="config", index=idx))
    return out


def _literal_trees(val: int, lits: list[Binding], live) -> list[Tree]:  # noqa: ANN001
    """Distinct prunable trees that ops in the module sized with the literal ``val``.

    When they disagree, sizes that pass a dim of the op's input through
    (``x.view(B, C, -1)``, most likely ``C = x.shape[1]``) are not counted: the
    attribute is taken to size the others (the rehearsal checks the guess).
    """
    seen: dict[str, Tree] = {}
    sized: set[str] = set()  # trees some literal sized without passing a dim through
    for b in lits:
        for i, (v, d) in enumerate(zip(b.value, b.dims)):
            if v == val and (t := live(d)) is not None:
                key = repr(t.to_json())
                seen.setdefault(key, t)
                if not (i < len(b.passthrough) and b.passthrough[i]):
                    sized.add(key)
    if len(seen) > 1 and sized:
        return [t for k, t in seen.items() if k in sized]
    return list(seen.values())


def _traced(b: Binding, allowed: frozenset[str], attrs: dict[str, object]) -> bool:
    """A known module's literal is required only if it is one of its traced attributes
    (a conv's groups); its other literals (Linear's internal views) are internal."""
    return bool(allowed) and any(v in b.value for k, v in attrs.items() if k in allowed)


def _unmet(lits: list[Binding], attrs: dict[str, object], live) -> list[tuple[Binding, int]]:  # noqa: ANN001
    """Required literal elements on prunable dims that no attribute (or product of two
    attributes, like ``num_heads * head_dim``) can carry."""
    ints = [v for v in attrs.values() if isinstance(v, int)]
    ok = set(ints) | {a * b for a in ints for b in ints}
    seqs = {tuple(v) for v in attrs.values() if not isinstance(v, int)}
    out = []
    for b in lits:
        if not b.required or b.value in seqs:
            continue
        for i, (v, d) in enumerate(zip(b.value, b.dims)):
            if v not in ok and live(d) is not None:
                out.append((b, i))
    return out


def _int_candidates(val, lits, dims, space, live) -> tuple[list[Tree], bool]:  # noqa: ANN001
    """Trees an int attribute may stand for: literal args first, else produced dims.
    The flag says whether they came from literals."""
    trees = _literal_trees(val, lits, live)
    if trees:
        return trees, True
    seen: dict[str, Tree] = {}
    for d in dims:
        if _size(space, d) == val and (t := live(d)) is not None:
            seen.setdefault(repr(t.to_json()), t)
    return list(seen.values()), False


def _size(space: Space, dim: list[int]) -> int:
    n = 1
    for a in dim:
        n *= space.size[space.find(a)]
    return n


def _relabel(t: Tree, relabel: dict[int, int]) -> Tree:
    if t.kind == "leaf":
        return Tree("leaf", t.size, group=relabel.get(t.group, -1))
    return Tree(t.kind, t.size, children=[_relabel(c, relabel) for c in t.children])
