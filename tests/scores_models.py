"""Small models, hand-built groups and a brute-force reference for the score tests.

Not a test module (no ``test_`` prefix); imported by ``tests/test_scores_*.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from cpd.groups.group import Group, Member

F64 = torch.float64


def plain(n: int) -> list[list[int]]:
    """``index`` for ``n`` one-position channels."""
    return [[i] for i in range(n)]


def sum_mse(out: Tensor, y: Tensor) -> Tensor:
    return 0.5 * (out - y).square().sum()


def mean_mse(out: Tensor, y: Tensor) -> Tensor:
    # Mean over the batch of each sample's summed squared error.
    return 0.5 * (out - y).square().flatten(1).sum(1).mean()


# --------------------------------------------------------------------------- MLP
def mlp(seed: int = 0) -> nn.Sequential:
    """Linear(5, 6) -> Tanh -> Linear(6, 3), float64. Tanh keeps every channel live."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).to(F64)


def mlp_group(gid: int = 0) -> Group:
    """The hidden channels: rows of fc1 (weight and bias) and columns of fc2."""
    return Group(
        id=gid,
        size=6,
        members=[Member("0.weight", 0, plain(6)), Member("0.bias", 0, plain(6)), Member("2.weight", 1, plain(6))],
    )


def mlp_data(n: int = 8, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=F64), torch.randn(n, 3, generator=g, dtype=F64)


# ------------------------------------------------------------ exact quadratic model
class TwoBranch(nn.Module):
    """``f(x) = a . x[:, :C] + b . x[:, C:]``: linear in its parameters, hence the
    squared loss is exactly quadratic in a mask on a channel spanning ``a`` and ``b``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c
        self.a = nn.Linear(c, 1, bias=False)
        self.b = nn.Linear(c, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.a(x[:, : self.c]) + self.b(x[:, self.c :])


def quadratic_case(c: int = 4) -> tuple[TwoBranch, Group, Tensor, Tensor]:
    """A model, group and data where the empirical Fisher *is* the Hessian.

    * Features: the 8 rows of a Sylvester-Hadamard matrix with columns scaled
      differently, so the 2c = 8 feature columns are orthogonal: the weight Hessian
      ``X^T X`` is diagonal (Hutchinson exact with any probe, OBD's diagonal
      assumption exact, no cross terms between ``a`` and ``b``).
    * Every feature row appears twice, with residual ``f - y = +1`` and ``-1``:
      the gradient of the summed loss is zero and every ``|residual| = 1``, so
      ``sum_n g_n g_n^T`` equals the Gauss-Newton matrix, which equals the Hessian
      because the model is linear.

    Then removing channel ``c`` changes the summed loss by exactly
    ``dL_c = hessian_c / 2 = obd_c``.
    """
    h = torch.ones(1, 1, dtype=F64)
    while h.shape[0] < 2 * c:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    scale = torch.linspace(0.5, 2.0, 2 * c, dtype=F64)
    x0 = h[:, : 2 * c] * scale  # (8, 2c) with orthogonal columns
    x = torch.cat([x0, x0])  # (16, 2c)
    r = torch.cat([torch.ones(len(x0)), -torch.ones(len(x0))]).to(F64).unsqueeze(1)
    torch.manual_seed(3)
    model = TwoBranch(c).to(F64)
    with torch.no_grad():
        model.a.weight.copy_(torch.tensor([[0.3, -1.2, 0.8, 2.0]], dtype=F64)[:, :c])
        model.b.weight.copy_(torch.tensor([[1.1, 0.4, -0.7, -0.2]], dtype=F64)[:, :c])
        y = model(x) - r
    group = Group(id=0, size=c, members=[Member("a.weight", 1, plain(c)), Member("b.weight", 1, plain(c))])
    return model, group, x, y


def removal_delta(model: nn.Module, group: Group, x: Tensor, y: Tensor, loss_fn: Callable) -> Tensor:
    """Exact change of ``loss_fn`` when each channel's parameter elements are zeroed: ``(size,)``."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        base = loss_fn(model(x), y)
        out = []
        for c in range(group.size):
            p = {k: v.clone() for k, v in params.items()}
            for m in group.params():
                p[m.name].index_fill_(m.dim, torch.tensor(m.index[c]), 0.0)
            out.append(loss_fn(functional_call(model, p, (x,)), y) - base)
    return torch.stack(out)


# ------------------------------------------------------------- brute-force reference
def mask_grads(model: nn.Module, group: Group, x: Tensor, y: Tensor, loss_fn: Callable) -> Tensor:
    """Per-sample gradient w.r.t. an explicit channel mask: ``(N, size)``.

    Independent of the library: every parameter member is multiplied by a mask vector
    ``m`` (at 1) broadcast along its channel dimension, and each sample's loss (a batch
    of one) is differentiated w.r.t. ``m`` by plain autograd.
    """
    params = {k: v.detach() for k, v in model.named_parameters()}
    rows = []
    for n in range(len(x)):
        m = torch.ones(group.size, dtype=F64, requires_grad=True)
        p = dict(params)
        for mem in group.params():
            shape = p[mem.name].shape
            pos_to_chan = torch.full((shape[mem.dim],), group.size, dtype=torch.long)
            for c, row in enumerate(mem.index):
                pos_to_chan[row] = c
            mult = torch.cat([m, torch.ones(1, dtype=F64)])[pos_to_chan]
            view = [1] * len(shape)
            view[mem.dim] = -1
            p[mem.name] = p[mem.name] * mult.reshape(view)
        loss = loss_fn(functional_call(model, p, (x[n : n + 1],)), y[n : n + 1])
        rows.append(torch.autograd.grad(loss, m)[0])
    return torch.stack(rows)


# ------------------------------------------------------------------ conv / BN chain
class ConvBN(nn.Module):
    """conv(3->4) -> BN -> ReLU -> conv(4->2) -> global mean; output ``(N, 2)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(torch.relu(self.bn(self.conv1(x)))).mean((2, 3))


def conv_bn(seed: int = 0) -> ConvBN:
    torch.manual_seed(seed)
    model = ConvBN().to(F64)
    with torch.no_grad():  # non-trivial running stats and affine parameters
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.5, 0.5)
    return model


def conv_bn_group(with_buffers: bool = True) -> Group:
    idx = plain(4)
    members = [
        Member("conv1.weight", 0, idx),
        Member("conv1.bias", 0, idx),
        Member("bn.weight", 0, idx),
        Member("bn.bias", 0, idx),
        Member("conv2.weight", 1, idx),
    ]
    if with_buffers:
        members += [Member("bn.running_mean", 0, idx, is_param=False), Member("bn.running_var", 0, idx, is_param=False)]
    return Group(id=0, size=4, members=members)


# ------------------------------------------------------------------- head channels
class Heads(nn.Module):
    """Linear(4, 8) -> 2 heads of width 4, each normalised on its own -> Linear(8, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x).reshape(-1, 2, 4)
        h = torch.tanh(h) * h.square().mean(-1, keepdim=True).add(1.0).rsqrt()
        return self.fc2(h.reshape(-1, 8))


def heads_group() -> Group:
    idx = [[0, 1, 2, 3], [4, 5, 6, 7]]
    return Group(
        id=5,
        size=2,
        members=[Member("fc1.weight", 0, idx), Member("fc1.bias", 0, idx), Member("fc2.weight", 1, idx)],
        role="heads",
    )
