"""Sample submissions built from the current release and solution notebooks: for dry runs, tests and benchmarks.

    >>> nb = solved(release_nb, solution_nb)                  # everything right   # doctest: +SKIP
    >>> nb = answered(release_nb, {"ex01_arange_matrix": src})  # one answer filled in  # doctest: +SKIP
    >>> students = honest_class(release_nb, solution_nb, 20)  # (student, notebook, points earned)  # doctest: +SKIP
    >>> nb = violating(release_nb, solution_nb, "ex02_matmul_by_broadcasting")  # a constraint broken  # doctest: +SKIP

The batteries of issue #27 (a grade the learner can predict) live here too: :data:`BYPASSES` (ways around a
stated constraint, each to be caught), :data:`ACCEPTED` (legitimate answers a constraint must let through) and
:data:`SCRATCH_CELLS` (cells a learner may add without changing any grade, :func:`with_scratch`);
:func:`attempting` puts several tasks' attempts into one notebook and :func:`rounds` groups attempts that way.

Built, not stored: the exercise notebooks evolve, and a stored copy would go stale. ``solved`` works for
any exercise; ``honest_class`` builds a class of exercise 01 (five tasks, ``POINTS``, answer cells
``<task>_answer``) with correct, partial and wrong answers and no attack, which plain nbgrader grades
correctly too (the grading benchmark compares both graders on it).
"""

from __future__ import annotations

import copy

import nbformat

from course_utils.grading.cells import answer_sources, grade_id, is_answer_cell

TASKS = [
    "ex01_arange_matrix",
    "ex01_numpy_to_float_tensor",
    "ex01_dataframe_to_tensors",
    "ex01_tile_images",
    "ex01_join_and_reshape",
]
#: the points of each task of exercise 01 (a test keeps this in step with the solution notebook)
POINTS = {
    "ex01_arange_matrix": 2.0,
    "ex01_numpy_to_float_tensor": 2.0,
    "ex01_dataframe_to_tensors": 2.0,
    "ex01_tile_images": 3.0,
    "ex01_join_and_reshape": 2.0,
}
WRONG = {  # plausible wrong answers to exercise 01: right names, wrong values
    "ex01_arange_matrix": "def arange_matrix(rows, cols, dtype=torch.float32):\n    return torch.zeros(rows, cols, dtype=dtype)\n",
    "ex01_numpy_to_float_tensor": "def numpy_to_float_tensor(array):\n    return torch.zeros(array.shape)\n",
    "ex01_dataframe_to_tensors": "def dataframe_to_tensors(frame, target):\n    return torch.zeros(1), torch.zeros(1)\n",
    "ex01_tile_images": "def tile_images(images, ncols):\n    return images.reshape(-1, images.shape[-1] * ncols)\n",
    "ex01_join_and_reshape": "def join_and_reshape(a, b, cols):\n    return torch.zeros(1)\n",
}


def earned(*tasks: str) -> float:
    """The points exercise 01 gives for these tasks done right.

    >>> earned("ex01_arange_matrix", "ex01_tile_images")
    5.0
    """
    return float(sum(POINTS[task] for task in tasks))


def cell_of(nb, grade_id_: str):
    """The cell of ``nb`` with this nbgrader grade id."""
    return next(c for c in nb.cells if grade_id(c) == grade_id_)


def without_markers(source: str) -> str:
    """A solution cell's source as a student would write it: the BEGIN/END SOLUTION lines removed."""
    return "".join(
        line
        for line in source.splitlines(keepends=True)
        if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line
    )


def solution_answers(solution_nb, tasks=TASKS) -> dict[str, str]:
    """task -> the solution's answer source (with its markers), for the given tasks."""
    return {t: cell_of(solution_nb, f"{t}_answer").source for t in tasks}


def answered(release_nb, answers: dict[str, str]):
    """The release with the given tasks' answer cells (``<task>_answer``) filled in, the rest untouched."""
    nb = copy.deepcopy(release_nb)
    for task, source in answers.items():
        cell_of(nb, f"{task}_answer").source = source
    return nb


def solved(release_nb, solution_nb):
    """What a student who gets everything right hands in: the release, each answer cell as in the solution."""
    nb = copy.deepcopy(release_nb)
    answers = answer_sources(solution_nb)
    for cell in nb.cells:
        if is_answer_cell(cell) and grade_id(cell) in answers:
            cell.source = without_markers(answers[grade_id(cell)])
    return nb


def honest_class(release_nb, solution_nb, n: int) -> list[tuple[str, object, float]]:
    """``n`` honest 01 submissions, (student, notebook, points earned): full, partial and wrong answers mixed.

    Student i answers the first ``i % 6`` tasks right and, when i is odd, the next one with a wrong answer.
    """
    answers = solution_answers(solution_nb)
    students = []
    for i in range(n):
        right = i % (len(TASKS) + 1)
        chosen = {t: answers[t] for t in TASKS[:right]}
        if i % 2 and right < len(TASKS):
            chosen[TASKS[right]] = WRONG[TASKS[right]]
        students.append((f"student{i:03d}", answered(release_nb, chosen), earned(*TASKS[:right])))
    return students


#: for every constrained task: an answer that computes the right values with the operation the task forbids
VIOLATIONS = {
    "ex02_matmul_by_broadcasting": (
        "def matmul_by_broadcasting(A, B):\n"
        "    if A.shape[1] != B.shape[0]:\n"
        "        raise ValueError(f'cannot multiply {tuple(A.shape)} by {tuple(B.shape)}')\n"
        "    return A @ B\n"
    ),
    "ex03_logaddexp_gradient": (
        "def logaddexp_grads(x, y):\n"
        "    x = x.detach().clone().requires_grad_(True)\n"
        "    y = y.detach().clone().requires_grad_(True)\n"
        "    torch.logaddexp(x, y).sum().backward()\n"
        "    return x.grad, y.grad\n"
    ),
    "ex05_smooth_l1_by_hand": (
        "def smooth_l1_by_hand(pred, target, beta=1.0):\n    return F.smooth_l1_loss(pred, target, beta=beta)\n"
    ),
    "ex05_bce_with_logits_by_hand": (
        "def bce_with_logits_by_hand(logits, targets):\n"
        "    return F.binary_cross_entropy_with_logits(logits, targets)\n"
    ),
    "ex05_cross_entropy_by_hand": (
        "def cross_entropy_by_hand(logits, labels, label_smoothing=0.0):\n"
        "    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)\n"
    ),
    "ex06_log_sigmoid": ("def log_sigmoid(z):\n    return torch.nn.functional.logsigmoid(z)\n"),
    "ex06_sigmoid_slope": ("def sigmoid_slope(z):\n    s = torch.sigmoid(z)\n    return s * (1 - s)\n"),
    "ex06_forward": (
        "def forward(X, W1, b1, W2, b2):\n"
        "    z1 = X @ W1 + b1\n"
        "    h = torch.sigmoid(z1)\n"
        "    return z1, h, h @ W2 + b2\n\n\n"
        "def bce_loss(z2, y):\n"
        "    return -(y * log_sigmoid(z2) + (1 - y) * log_sigmoid(-z2)).mean()\n"
    ),
    "ex06_backward": (
        "def backward(X, y, z1, h, z2, W2):\n"
        "    d_z2 = (torch.sigmoid(z2) - y) / len(y)\n"
        "    d_z1 = (d_z2 @ W2.T) * torch.sigmoid(z1) * (1 - torch.sigmoid(z1))\n"
        "    return X.T @ d_z1, d_z1.sum(dim=0), h.T @ d_z2, d_z2.sum(dim=0)\n"
    ),
    "ex06_train": (
        "def train(X, y, epochs, lr, seed=0):\n"
        "    torch.manual_seed(seed)\n"
        "    weights = [w.requires_grad_() for w in [torch.randn(3, 4), torch.zeros(4), torch.randn(4, 1), torch.zeros(1)]]\n"
        "    for _ in range(epochs):\n"
        "        z1, h, z2 = forward(X, *weights)\n"
        "        gradients = torch.autograd.grad(bce_loss(z2, y), weights)\n"
        "        weights = [(w - lr * dw).detach().requires_grad_() for w, dw in zip(weights, gradients)]\n"
        "    return torch.exp(log_sigmoid(forward(X, *weights)[2])).detach()\n"
    ),
    "ex07_confusion_matrix": (
        "from course_utils.plots import confusion_matrix as counts_of\n\n\n"
        "def confusion_matrix(labels, predictions, num_classes):\n"
        "    return torch.from_numpy(counts_of(labels, predictions, num_classes))\n"
    ),
    "ex08_conv_output_shape": (
        "def conv_output_shape(input_shape, out_channels, kernel_size, stride=1, padding=0, dilation=1):\n"
        "    conv = nn.Conv2d(input_shape[1], out_channels, kernel_size, stride, padding, dilation)\n"
        "    return tuple(conv(torch.zeros(input_shape)).shape)\n"
    ),
    "ex08_conv_parameter_count": (
        "def conv_parameter_count(in_channels, out_channels, kernel_size, groups=1, bias=True):\n"
        "    conv = nn.Conv2d(in_channels, out_channels, kernel_size, groups=groups, bias=bias)\n"
        "    return sum(p.numel() for p in conv.parameters())\n"
    ),
    "ex08_conv2d_by_hand": (
        "def conv2d_by_hand(image, kernel, padding=0):\n"
        "    return F.conv2d(image[None, None], kernel[None, None], padding=padding)[0, 0]\n"
    ),
    "ex09_shard_indices": (
        "def shard_indices(n, world_size, rank, epoch, seed=0):\n"
        "    sampler = torch.utils.data.DistributedSampler(range(n), world_size, rank, shuffle=True, seed=seed)\n"
        "    sampler.set_epoch(epoch)\n"
        "    return torch.tensor(list(sampler))\n"
    ),
}

_MATMUL = (
    "def matmul_by_broadcasting(A, B):\n"
    "    if A.shape[1] != B.shape[0]:\n"
    "        raise ValueError(f'cannot multiply {tuple(A.shape)} by {tuple(B.shape)}')\n"
    "    return EXPR\n"
)


def _matmul(expr: str) -> str:
    return _MATMUL.replace("EXPR", expr)


_LOGADDEXP = "def logaddexp_grads(x, y):\n{}    return x.grad, y.grad\n"
_BY_AUTOGRAD = (
    "    x, y = x.detach().clone().requires_grad_(True), y.detach().clone().requires_grad_(True)\n"
    "    torch.logaddexp(x, y).sum().backward()\n"
)
_CONV = "def conv2d_by_hand(image, kernel, padding=0):\n    return {}\n"
_LOG_SIGMOID = "def log_sigmoid(z):\n    return {}\n"
_SMOOTH_L1 = "def smooth_l1_by_hand(pred, target, beta=1.0):\n    return {}\n"
_CROSS_ENTROPY = "def cross_entropy_by_hand(logits, labels, label_smoothing=0.0):\n    return {}\n"

#: ways around a stated constraint, each caught in the test cell and in the grade: name -> (task, keyword
#: arguments of :func:`violating`); the issue's list (#27) first, then more of the same kinds
BYPASSES = {
    "matmul:addmm_": (
        "ex02_matmul_by_broadcasting",
        dict(answer=_matmul("torch.zeros(A.shape[0], B.shape[1], dtype=torch.result_type(A, B)).addmm_(A, B)")),
    ),
    "matmul:baddbmm_": (
        "ex02_matmul_by_broadcasting",
        dict(answer=_matmul("torch.zeros(1, A.shape[0], B.shape[1], dtype=A.dtype).baddbmm_(A[None], B[None])[0]")),
    ),
    "matmul:embedding_bag": (
        "ex02_matmul_by_broadcasting",
        dict(
            answer=_matmul(
                "F.embedding_bag(torch.arange(A.shape[1]).repeat(A.shape[0]), B, torch.arange(0, A.numel(), A.shape[1]), "
                "per_sample_weights=A.flatten(), mode='sum')"
            )
        ),
    ),
    "matmul:F.np.matmul": (
        "ex02_matmul_by_broadcasting",
        dict(answer=_matmul("torch.from_numpy(torch.nn.functional.np.matmul(A.numpy(), B.numpy()))")),
    ),
    "matmul:torch.builtins.getattr": (
        "ex02_matmul_by_broadcasting",
        dict(answer=_matmul("torch.as_tensor(torch.builtins.getattr(F.np, 'mat' + 'mul')(A.numpy(), B.numpy()))")),
    ),
    "matmul:torch.importlib": (
        "ex02_matmul_by_broadcasting",
        dict(answer=_matmul("torch.importlib.import_module('torch').mm(A, B)")),
    ),
    "matmul:torch.sys.modules": (
        "ex02_matmul_by_broadcasting",
        dict(answer=_matmul("torch.sys.modules['torch'].mm(A, B)")),
    ),
    "matmul:torch.ops.aten.mm": ("ex02_matmul_by_broadcasting", dict(answer=_matmul("torch.ops.aten.mm(A, B)"))),
    "matmul:tensordot": ("ex02_matmul_by_broadcasting", dict(answer=_matmul("torch.tensordot(A, B, dims=1)"))),
    "matmul:unbound Tensor.matmul": ("ex02_matmul_by_broadcasting", dict(answer=_matmul("torch.Tensor.matmul(A, B)"))),
    "matmul:dunder": ("ex02_matmul_by_broadcasting", dict(answer=_matmul("type(A).__matmul__(A, B)"))),
    "matmul:default argument": (
        "ex02_matmul_by_broadcasting",
        dict(
            answer=(
                "def matmul_by_broadcasting(A, B, product=torch.mm):\n"
                "    if A.shape[1] != B.shape[0]:\n"
                "        raise ValueError(f'cannot multiply {tuple(A.shape)} by {tuple(B.shape)}')\n"
                "    return product(A, B)\n"
            )
        ),
    ),
    # neutralise the kernel-side check (recording a clean outcome) and use `@`: the answer cell still says `@`
    "matmul:patched kernel check": (
        "ex02_matmul_by_broadcasting",
        dict(
            answer=VIOLATIONS["ex02_matmul_by_broadcasting"],
            extra_cells=[
                "import course_utils.constraints as constraints\nfrom course_utils.checks import record\n\n\n"
                "def no_check(fn, *rules, key=None, **kwargs):\n"
                "    record(key, [], kind='constraint')\n"
                "    return fn\n\n\n"
                "constraints.constrained = no_check\n"
            ],
        ),
    ),
    # a clean answer cell calling a helper defined elsewhere, which does the forbidden product
    "matmul:helper in another cell": (
        "ex02_matmul_by_broadcasting",
        dict(
            answer="def matmul_by_broadcasting(A, B):\n    return product_helper(A, B)\n",
            extra_cells=["def product_helper(A, B):\n    return torch.matmul(A, B)\n"],
        ),
    ),
    # cov(Z) is a matrix product: rows of A and columns of B, centred by their negatives, meet in one block of it
    "matmul:torch.cov": (
        "ex02_matmul_by_broadcasting",
        dict(
            answer=_matmul(
                "(torch.cov(torch.cat([torch.cat([A, B.T]), -torch.cat([A, B.T])], 1))[:A.shape[0], A.shape[0]:] "
                "* (2 * A.shape[1] - 1) / 2).to(torch.result_type(A, B))"
            )
        ),
    ),
    "autograd:popped guard": (
        "ex03_logaddexp_gradient",
        dict(
            answer=(
                "def logaddexp_grads(x, y):\n"
                "    pop = torch.builtins.getattr(torch.sys.modules['torch.overrides'], '_pop_mode_temporarily')\n"
                "    with pop():\n"
                "        x, y = x.detach().clone().requires_grad_(True), y.detach().clone().requires_grad_(True)\n"
                "        torch.logaddexp(x, y).sum().backward()\n"
                "    return x.grad, y.grad\n"
            )
        ),
    ),
    "autograd:torch.func.grad": (
        "ex03_logaddexp_gradient",
        dict(
            answer=(
                "def logaddexp_grads(x, y):\n"
                "    return torch.func.grad(lambda a, b: torch.logaddexp(a, b).sum(), argnums=(0, 1))(x, y)\n"
            )
        ),
    ),
    "autograd:requires_grad attribute": (
        "ex03_logaddexp_gradient",
        dict(
            answer=_LOGADDEXP.format(
                "    x, y = x.detach().clone(), y.detach().clone()\n    x.requires_grad = True\n    y.requires_grad = True\n"
                "    torch.logaddexp(x, y).sum().backward()\n"
            )
        ),
    ),
    "autograd:Parameter": (
        "ex03_logaddexp_gradient",
        dict(
            answer=_LOGADDEXP.format(
                "    x, y = torch.nn.Parameter(x.clone()), torch.nn.Parameter(y.clone())\n"
                "    torch.logaddexp(x, y).sum().backward()\n"
            )
        ),
    ),
    "autograd:enable_grad": (
        "ex03_logaddexp_gradient",
        dict(
            answer=_LOGADDEXP.format(
                "    with torch.enable_grad():\n"
                "        x, y = x.detach().clone().requires_grad_(True), y.detach().clone().requires_grad_(True)\n"
                "        torch.logaddexp(x, y).sum().backward()\n"
            )
        ),
    ),
    "loss:SmoothL1Loss module": (
        "ex05_smooth_l1_by_hand",
        dict(answer=_SMOOTH_L1.format("torch.nn.SmoothL1Loss(beta=beta)(pred, target)")),
    ),
    "loss:huber_loss": (
        "ex05_smooth_l1_by_hand",
        dict(
            answer=_SMOOTH_L1.format(
                "F.huber_loss(pred, target, delta=beta) / beta if beta else (pred - target).abs().mean()"
            )
        ),
    ),
    "loss:torch.importlib": (
        "ex05_smooth_l1_by_hand",
        dict(
            answer=_SMOOTH_L1.format(
                "torch.importlib.import_module('torch.nn.functional').smooth_l1_loss(pred, target, beta=beta)"
            )
        ),
    ),
    "loss:softplus": (
        "ex05_bce_with_logits_by_hand",
        dict(
            answer=(
                "def bce_with_logits_by_hand(logits, targets):\n"
                "    return (F.softplus(logits) - targets * logits).mean()\n"
            )
        ),
    ),
    "loss:distributions.Bernoulli": (
        "ex05_bce_with_logits_by_hand",
        dict(
            answer=(
                "def bce_with_logits_by_hand(logits, targets):\n"
                "    return -torch.distributions.Bernoulli(logits=logits, validate_args=False).log_prob(targets).mean()\n"
            )
        ),
    ),
    "loss:BCEWithLogitsLoss module": (
        "ex05_bce_with_logits_by_hand",
        dict(
            answer=(
                "def bce_with_logits_by_hand(logits, targets):\n"
                "    return torch.nn.BCEWithLogitsLoss()(logits, targets)\n"
            )
        ),
    ),
    "loss:nll_loss of log_softmax": (
        "ex05_cross_entropy_by_hand",
        dict(
            answer=_CROSS_ENTROPY.format(
                "(1 - label_smoothing) * F.nll_loss(torch.log_softmax(logits, 1), labels) "
                "- label_smoothing * torch.log_softmax(logits, 1).mean()"
            )
        ),
    ),
    "loss:special.log_softmax": (
        "ex05_cross_entropy_by_hand",
        dict(
            answer=_CROSS_ENTROPY.format(
                "-((1 - label_smoothing) * torch.special.log_softmax(logits, 1).gather(1, labels[:, None]).squeeze(1) "
                "+ label_smoothing * torch.special.log_softmax(logits, 1).mean(1)).mean()"
            )
        ),
    ),
    "sigmoid:bce_with_logits": (
        "ex06_log_sigmoid",
        dict(
            answer=_LOG_SIGMOID.format("-F.binary_cross_entropy_with_logits(z, torch.ones_like(z), reduction='none')")
        ),
    ),
    "sigmoid:2-class cross_entropy": (
        "ex06_log_sigmoid",
        dict(
            answer=_LOG_SIGMOID.format(
                "-F.cross_entropy(torch.stack([torch.zeros_like(z), z], -1).reshape(-1, 2), "
                "torch.ones(z.numel(), dtype=torch.long), reduction='none').reshape(z.shape)"
            )
        ),
    ),
    "sigmoid:logaddexp": (
        "ex06_log_sigmoid",
        dict(answer=_LOG_SIGMOID.format("-torch.logaddexp(torch.zeros_like(z), -z)")),
    ),
    "sigmoid:special.expit": (
        "ex06_log_sigmoid",
        dict(answer=_LOG_SIGMOID.format("torch.log(torch.special.expit(z))")),
    ),
    "sigmoid:Softplus module": ("ex06_log_sigmoid", dict(answer=_LOG_SIGMOID.format("-torch.nn.Softplus()(-z)"))),
    "sigmoid:torch.ops": (
        "ex06_log_sigmoid",
        dict(answer=_LOG_SIGMOID.format("torch.ops.aten.log_sigmoid_forward(z)[0]")),
    ),
    "sigmoid:distributions.Bernoulli": (
        "ex06_log_sigmoid",
        dict(answer=_LOG_SIGMOID.format("torch.distributions.Bernoulli(logits=z).log_prob(torch.ones_like(z))")),
    ),
    "sigmoid:in-place sigmoid_": (
        "ex06_sigmoid_slope",
        dict(answer=("def sigmoid_slope(z):\n    s = z.clone().sigmoid_()\n    return s * (1 - s)\n")),
    ),
    "sigmoid:Sigmoid module": (
        "ex06_forward",
        dict(
            answer=(
                "def forward(X, W1, b1, W2, b2):\n    z1 = X @ W1 + b1\n    h = torch.nn.Sigmoid()(z1)\n"
                "    return z1, h, h @ W2 + b2\n\n\n"
                "def bce_loss(z2, y):\n    return -(y * log_sigmoid(z2) + (1 - y) * log_sigmoid(-z2)).mean()\n"
            )
        ),
    ),
    "autograd:torch.autograd.grad": ("ex06_train", dict(answer=VIOLATIONS["ex06_train"])),
    "self_contained:torch.importlib": (
        "ex07_confusion_matrix",
        dict(
            answer=(
                "def confusion_matrix(labels, predictions, num_classes):\n"
                "    plots = torch.importlib.import_module('course_utils.plots')\n"
                "    return torch.as_tensor(plots.confusion_matrix(labels, predictions, num_classes))\n"
            )
        ),
    ),
    "self_contained:helper in another cell": (
        "ex07_confusion_matrix",
        dict(
            answer=(
                "def confusion_matrix(labels, predictions, num_classes):\n"
                "    return counts_helper(labels, predictions, num_classes)\n"
            ),
            extra_cells=[
                "def counts_helper(labels, predictions, num_classes):\n"
                "    return torch.bincount(labels * num_classes + predictions, minlength=num_classes ** 2)"
                ".reshape(num_classes, num_classes)\n"
            ],
        ),
    ),
    "convolution:mkldnn_convolution": (
        "ex08_conv2d_by_hand",
        dict(
            answer=_CONV.format(
                "torch.mkldnn_convolution(image[None, None].float(), kernel[None, None].float(), None, [padding, padding], "
                "[1, 1], [1, 1], 1)[0, 0].to(torch.promote_types(image.dtype, kernel.dtype))"
            )
        ),
    ),
    "convolution:unfold": (
        "ex08_conv2d_by_hand",
        dict(
            answer=_CONV.format(
                "(F.pad(image, (padding,) * 4).unfold(0, kernel.shape[0], 1).unfold(1, kernel.shape[1], 1) * kernel)"
                ".sum((-1, -2))"
            )
        ),
    ),
    "convolution:torch.importlib": (
        "ex08_conv2d_by_hand",
        dict(
            answer=_CONV.format(
                "torch.importlib.import_module('torch.nn.functional').conv2d(image[None, None], kernel[None, None], "
                "padding=padding)[0, 0]"
            )
        ),
    ),
    "convolution:Conv2d for the shape": ("ex08_conv_output_shape", dict(answer=VIOLATIONS["ex08_conv_output_shape"])),
    "convolution:Conv2d for the count": (
        "ex08_conv_parameter_count",
        dict(answer=VIOLATIONS["ex08_conv_parameter_count"]),
    ),
    "self_contained:torch.utils": ("ex09_shard_indices", dict(answer=VIOLATIONS["ex09_shard_indices"])),
    "self_contained:torch.importlib sampler": (
        "ex09_shard_indices",
        dict(
            answer=(
                "def shard_indices(n, world_size, rank, epoch, seed=0):\n"
                "    data = torch.importlib.import_module('torch.utils.data')\n"
                "    sampler = data.DistributedSampler(range(n), world_size, rank, shuffle=True, seed=seed)\n"
                "    sampler.set_epoch(epoch)\n"
                "    return torch.tensor(list(sampler))\n"
            )
        ),
    ),
}

#: bypasses that patch the kernel's own check: by design only the grade can see through them (the learner's kernel
#: runs whatever the notebook did to it; the grade runs the answer cell alone)
KERNEL_ATTACKS = frozenset({"matmul:patched kernel check"})

#: bypasses whose answer cell reads clean: only the run-time guard stops them (in the test cell and the task's job)
RUN_TIME_ONLY = frozenset({"matmul:torch.cov", "sigmoid:distributions.Bernoulli", "loss:distributions.Bernoulli"})

#: legitimate answers a stated constraint must accept, in the test cell and in the grade (the false positives the
#: issue (#27) found, and more of the kinds): name -> (task, keyword arguments of :func:`violating`)
ACCEPTED = {
    "sigmoid:special.log1p": (
        "ex06_log_sigmoid",
        dict(answer=_LOG_SIGMOID.format("torch.clamp(z, max=0) - torch.special.log1p(torch.exp(-z.abs()))")),
    ),
    "sigmoid:inference_mode and no_grad decorator": (
        "ex06_log_sigmoid",
        dict(
            answer=(
                "@torch.no_grad()\ndef log_sigmoid(z):\n    with torch.inference_mode():\n"
                "        return torch.clamp(z, max=0) - torch.log1p(torch.exp(-z.abs()))\n"
            )
        ),
    ),
    "sigmoid:import torch in the cell": (
        "ex06_log_sigmoid",
        dict(
            answer=(
                "import math\n\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
                + _LOG_SIGMOID.format("torch.where(z < 0, z - torch.log1p(torch.exp(z)), -torch.log1p(torch.exp(-z)))")
            )
        ),
    ),
    "sigmoid:tanh identity for the slope": (
        "ex06_sigmoid_slope",
        dict(answer=("def sigmoid_slope(z):\n    s = 0.5 * (1 + torch.tanh(z / 2))\n    return s * (1 - s)\n")),
    ),
    "sigmoid:requires_grad_(False)": (
        "ex06_forward",
        dict(
            answer=(
                "def forward(X, W1, b1, W2, b2):\n    X = X.clone().requires_grad_(False)\n    z1 = X @ W1 + b1\n"
                "    h = torch.exp(log_sigmoid(z1))\n    return z1, h, h @ W2 + b2\n\n\n"
                "def bce_loss(z2, y):\n    return -(y * log_sigmoid(z2) + (1 - y) * log_sigmoid(-z2)).mean()\n"
            )
        ),
    ),
    "autograd:inference_mode in backward": (
        "ex06_backward",
        dict(
            answer=(
                "def backward(X, y, z1, h, z2, W2):\n    with torch.inference_mode():\n"
                "        d_z2 = (torch.exp(log_sigmoid(z2)) - y) / len(y)\n"
                "        d_z1 = (d_z2 @ W2.T) * sigmoid_slope(z1)\n"
                "        return X.T @ d_z1, d_z1.sum(dim=0), h.T @ d_z2, d_z2.sum(dim=0)\n"
            )
        ),
    ),
    "autograd:no_grad decorated train": (
        "ex06_train",
        dict(
            answer=(
                "@torch.no_grad()\ndef train(X, y, epochs, lr, seed=0):\n    torch.manual_seed(seed)\n"
                "    W1, b1, W2, b2 = torch.randn(3, 4), torch.zeros(4), torch.randn(4, 1), torch.zeros(1)\n"
                "    for _ in range(epochs):\n        z1, h, z2 = forward(X, W1, b1, W2, b2)\n"
                "        dW1, db1, dW2, db2 = backward(X, y, z1, h, z2, W2)\n"
                "        W1, b1, W2, b2 = W1 - lr * dW1, b1 - lr * db1, W2 - lr * dW2, b2 - lr * db2\n"
                "    return torch.exp(log_sigmoid(forward(X, W1, b1, W2, b2)[2]))\n"
            )
        ),
    ),
    "autograd:inference_mode": (
        "ex03_logaddexp_gradient",
        dict(
            answer=(
                "def logaddexp_grads(x, y):\n    with torch.inference_mode():\n        top = torch.maximum(x, y)\n"
                "        ex, ey = torch.exp(x - top), torch.exp(y - top)\n        return ex / (ex + ey), ey / (ex + ey)\n"
            )
        ),
    ),
    "matmul:loops, printing and no_grad": (
        "ex02_matmul_by_broadcasting",
        dict(
            answer=(
                "import torch\n\n\n@torch.no_grad()\ndef matmul_by_broadcasting(A, B):\n    if A.shape[1] != B.shape[0]:\n"
                "        raise ValueError(f'cannot multiply {tuple(A.shape)} by {tuple(B.shape)}')\n"
                "    print(A.shape, B.shape)\n"
                "    out = torch.zeros(A.shape[0], B.shape[1], dtype=torch.result_type(A, B))\n"
                "    for i in range(A.shape[0]):\n        for j in range(B.shape[1]):\n"
                "            out[i, j] = (A[i] * B[:, j]).sum()\n    return out\n"
            )
        ),
    ),
    "loss:where and clamp": (
        "ex05_smooth_l1_by_hand",
        dict(
            answer=(
                "def smooth_l1_by_hand(pred, target, beta=1.0):\n    error = torch.abs(pred - target)\n"
                "    quadratic = torch.clamp(error, max=beta)\n"
                "    return (0.5 * quadratic ** 2 / beta + error - quadratic if beta else error).mean()\n"
            )
        ),
    ),
    "convolution:F.pad and slices": (
        "ex08_conv2d_by_hand",
        dict(
            answer=(
                "def conv2d_by_hand(image, kernel, padding=0):\n    image = F.pad(image, (padding,) * 4)\n"
                "    kh, kw = kernel.shape\n    h, w = image.shape[0] - kh + 1, image.shape[1] - kw + 1\n"
                "    return sum(kernel[a, b] * image[a:a + h, b:b + w] for a in range(kh) for b in range(kw))\n"
            )
        ),
    ),
    "self_contained:a loop": (
        "ex07_confusion_matrix",
        dict(
            answer=(
                "import torch\n\n\ndef confusion_matrix(labels, predictions, num_classes):\n"
                "    counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)\n"
                "    for t, p in zip(labels.tolist(), predictions.tolist()):\n        counts[t, p] += 1\n"
                "    return counts\n"
            )
        ),
    ),
}

#: cells a learner may add anywhere that redefine no graded function: no grade may change (issue #27)
SCRATCH_CELLS = {
    "import os": "import os\nprint(os.getcwd())",
    "import sys": "import sys\nprint(sys.version)",
    "import sympy": "import sympy\nsympy.symbols('x')",
    "%load_ext autoreload": "%load_ext autoreload\n%autoreload 2",
    "!ls": "!ls",
    "torch.exp?": "torch.exp?",
    "plt.rcParams": "import matplotlib.pyplot as plt\nplt.rcParams['figure.figsize'] = (8, 4)",
    "cudnn.benchmark": "torch.backends.cudnn.benchmark = True",
    "F = torch.nn.functional": "F = torch.nn.functional",
    "globals()": "globals()",
    "%config": "%config InlineBackend.figure_format = 'retina'",
    "a second def at the end": None,  # the first answer's function, defined again in a cell at the end
}


def with_scratch(nb, *kinds: str):
    """``nb`` with the scratch cells ``kinds`` of :data:`SCRATCH_CELLS`: after the set-up cell, or (a second,
    experimental ``def`` of the first task's function) at the end of the notebook."""
    nb = copy.deepcopy(nb)
    for kind in kinds:
        _add_scratch(nb, kind)
    return nb


def _add_scratch(nb, kind: str):
    source = SCRATCH_CELLS[kind]
    if source is None:
        answer = next(c for c in nb.cells if is_answer_cell(c))
        name = next(
            line.split("(")[0].split()[-1] for line in answer.source.splitlines() if line.startswith(("def ", "class "))
        )
        nb.cells.append(
            nbformat.v4.new_code_cell(
                f'def {name}(*args, **kwargs):\n    """Trying something."""\n'
                "    raise NotImplementedError('an experiment')\n"
            )
        )
        return
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell(source))


def violating(release_nb, solution_nb, task: str, answer: str | None = None, extra_cells=(), after_answer=()):
    """Everything right except ``task``, answered with ``answer`` (default :data:`VIOLATIONS`), with
    ``extra_cells`` added after the first code cell and ``after_answer`` cells right after the task's answer."""
    return _apply(solved(release_nb, solution_nb), task, answer, extra_cells, after_answer)


def _apply(nb, task: str, answer: str | None = None, extra_cells=(), after_answer=()):
    """``nb`` with ``task`` answered as :func:`violating` describes (changed in place, and returned)."""
    if answer is not None or not (extra_cells or after_answer):
        cell_of(nb, f"{task}_answer").source = answer if answer is not None else VIOLATIONS[task]
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    for offset, source in enumerate(extra_cells, start=1):
        nb.cells.insert(first_code + offset, nbformat.v4.new_code_cell(source))
    position = next(i for i, c in enumerate(nb.cells) if grade_id(c) == f"{task}_answer")
    for offset, source in enumerate(after_answer, start=1):
        nb.cells.insert(position + offset, nbformat.v4.new_code_cell(source))
    return nb


def attempting(release_nb, solution_nb, attempts: dict):
    """Everything right except the tasks of ``attempts`` (task -> keyword arguments of :func:`violating`), each
    answered as given: tasks are judged apart, so one notebook can carry an attempt at each of them."""
    nb = solved(release_nb, solution_nb)
    for task, kwargs in attempts.items():
        _apply(nb, task, **kwargs)
    return nb


def rounds(entries: dict, prefix: str) -> list[dict]:
    """The entries (name -> (task, kwargs)) of tasks starting with ``prefix`` (``"ex06"``), grouped into as few
    notebooks as possible: each round maps a task to the name of one attempt at it.

        >>> rounds({"a": ("ex06_x", {}), "b": ("ex06_x", {}), "c": ("ex06_y", {})}, "ex06")
        [{'ex06_x': 'a', 'ex06_y': 'c'}, {'ex06_x': 'b'}]
    """
    out: list[dict] = []
    for name, (task, _) in entries.items():
        if not task.startswith(prefix):
            continue
        slot = next((r for r in out if task not in r), None)
        if slot is None:
            slot = {}
            out.append(slot)
        slot[task] = name
    return out
