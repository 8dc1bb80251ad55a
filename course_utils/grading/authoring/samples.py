"""Sample submissions built from the current release and solution notebooks: for dry runs, tests and benchmarks.

    >>> nb = solved(release_nb, solution_nb)                  # everything right   # doctest: +SKIP
    >>> nb = answered(release_nb, {"ex01_arange_matrix": src})  # one answer filled in  # doctest: +SKIP
    >>> students = honest_class(release_nb, solution_nb, 20)  # (student, notebook, points earned)  # doctest: +SKIP
    >>> nb = violating(release_nb, solution_nb, "ex02_matmul_by_broadcasting")  # a constraint broken  # doctest: +SKIP

Built, not stored: the exercise notebooks evolve, and a stored copy would go stale. ``solved`` works for
any exercise; ``honest_class`` builds a class of exercise 01 (five tasks, ``POINTS``, answer cells
``<task>_answer``) with correct, partial and wrong answers and no attack, which plain nbgrader grades
correctly too (the grading benchmark compares both graders on it).
"""
from __future__ import annotations

import copy

import nbformat

from course_utils.grading.cells import answer_sources, grade_id, is_answer_cell

TASKS = ["ex01_arange_matrix", "ex01_numpy_to_float_tensor", "ex01_dataframe_to_tensors",
         "ex01_tile_images", "ex01_join_and_reshape"]
#: the points of each task of exercise 01 (a test keeps this in step with the solution notebook)
POINTS = {"ex01_arange_matrix": 2.0, "ex01_numpy_to_float_tensor": 2.0, "ex01_dataframe_to_tensors": 2.0,
          "ex01_tile_images": 3.0, "ex01_join_and_reshape": 2.0}
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
    return "".join(line for line in source.splitlines(keepends=True)
                   if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)


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
        "    return A @ B\n"),
    "ex03_logaddexp_gradient": (
        "def logaddexp_grads(x, y):\n"
        "    x = x.detach().clone().requires_grad_(True)\n"
        "    y = y.detach().clone().requires_grad_(True)\n"
        "    torch.logaddexp(x, y).sum().backward()\n"
        "    return x.grad, y.grad\n"),
    "ex05_smooth_l1_by_hand": (
        "def smooth_l1_by_hand(pred, target, beta=1.0):\n"
        "    return F.smooth_l1_loss(pred, target, beta=beta)\n"),
    "ex05_bce_with_logits_by_hand": (
        "def bce_with_logits_by_hand(logits, targets):\n"
        "    return F.binary_cross_entropy_with_logits(logits, targets)\n"),
    "ex05_cross_entropy_by_hand": (
        "def cross_entropy_by_hand(logits, labels, label_smoothing=0.0):\n"
        "    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)\n"),
    "ex06_log_sigmoid": (
        "def log_sigmoid(z):\n"
        "    return torch.nn.functional.logsigmoid(z)\n"),
    "ex06_sigmoid_slope": (
        "def sigmoid_slope(z):\n"
        "    s = torch.sigmoid(z)\n"
        "    return s * (1 - s)\n"),
    "ex06_forward": (
        "def forward(X, W1, b1, W2, b2):\n"
        "    z1 = X @ W1 + b1\n"
        "    h = torch.sigmoid(z1)\n"
        "    return z1, h, h @ W2 + b2\n\n\n"
        "def bce_loss(z2, y):\n"
        "    return -(y * log_sigmoid(z2) + (1 - y) * log_sigmoid(-z2)).mean()\n"),
    "ex06_backward": (
        "def backward(X, y, z1, h, z2, W2):\n"
        "    d_z2 = (torch.sigmoid(z2) - y) / len(y)\n"
        "    d_z1 = (d_z2 @ W2.T) * torch.sigmoid(z1) * (1 - torch.sigmoid(z1))\n"
        "    return X.T @ d_z1, d_z1.sum(dim=0), h.T @ d_z2, d_z2.sum(dim=0)\n"),
    "ex06_train": (
        "def train(X, y, epochs, lr, seed=0):\n"
        "    torch.manual_seed(seed)\n"
        "    weights = [w.requires_grad_() for w in [torch.randn(3, 4), torch.zeros(4), torch.randn(4, 1), torch.zeros(1)]]\n"
        "    for _ in range(epochs):\n"
        "        z1, h, z2 = forward(X, *weights)\n"
        "        gradients = torch.autograd.grad(bce_loss(z2, y), weights)\n"
        "        weights = [(w - lr * dw).detach().requires_grad_() for w, dw in zip(weights, gradients)]\n"
        "    return torch.exp(log_sigmoid(forward(X, *weights)[2])).detach()\n"),
    "ex07_confusion_matrix": (
        "from course_utils.plots import confusion_matrix as counts_of\n\n\n"
        "def confusion_matrix(labels, predictions, num_classes):\n"
        "    return torch.from_numpy(counts_of(labels, predictions, num_classes))\n"),
    "ex08_conv_output_shape": (
        "def conv_output_shape(input_shape, out_channels, kernel_size, stride=1, padding=0, dilation=1):\n"
        "    conv = nn.Conv2d(input_shape[1], out_channels, kernel_size, stride, padding, dilation)\n"
        "    return tuple(conv(torch.zeros(input_shape)).shape)\n"),
    "ex08_conv_parameter_count": (
        "def conv_parameter_count(in_channels, out_channels, kernel_size, groups=1, bias=True):\n"
        "    conv = nn.Conv2d(in_channels, out_channels, kernel_size, groups=groups, bias=bias)\n"
        "    return sum(p.numel() for p in conv.parameters())\n"),
    "ex08_conv2d_by_hand": (
        "def conv2d_by_hand(image, kernel, padding=0):\n"
        "    return F.conv2d(image[None, None], kernel[None, None], padding=padding)[0, 0]\n"),
    "ex09_shard_indices": (
        "def shard_indices(n, world_size, rank, epoch, seed=0):\n"
        "    sampler = torch.utils.data.DistributedSampler(range(n), world_size, rank, shuffle=True, seed=seed)\n"
        "    sampler.set_epoch(epoch)\n"
        "    return torch.tensor(list(sampler))\n"),
}

#: ways around the checks in the learner's kernel: task -> keyword arguments of :func:`violating`
BYPASSES = {
    # neutralise the kernel-side check (recording a clean outcome) and use `@`: only the grader's check is left
    "patched_kernel_check": ("ex02_matmul_by_broadcasting", dict(
        answer=VIOLATIONS["ex02_matmul_by_broadcasting"],
        extra_cells=["import course_utils.constraints as constraints\nfrom course_utils.checks import record\n\n\n"
                     "def no_check(fn, *rules, key=None, **kwargs):\n"
                     "    record(key, [], kind='constraint')\n"
                     "    return fn\n\n\n"
                     "constraints.constrained = no_check\n"])),
    # a clean answer cell calling a helper defined elsewhere, which does the forbidden product
    "helper_in_another_cell": ("ex02_matmul_by_broadcasting", dict(
        answer="def matmul_by_broadcasting(A, B):\n    return product_helper(A, B)\n",
        extra_cells=["def product_helper(A, B):\n    return torch.matmul(A, B)\n"])),
    # the solution's clean answer, then a cell that replaces it before the test runs
    "redefined_later": ("ex02_matmul_by_broadcasting", dict(
        after_answer=["def matmul_by_broadcasting(A, B):\n    return torch.mm(A, B)\n"])),
}


def violating(release_nb, solution_nb, task: str, answer: str | None = None, extra_cells=(), after_answer=()):
    """Everything right except ``task``, answered with ``answer`` (default :data:`VIOLATIONS`), with
    ``extra_cells`` added after the first code cell and ``after_answer`` cells right after the task's answer."""
    nb = solved(release_nb, solution_nb)
    if answer is not None or not (extra_cells or after_answer):
        cell_of(nb, f"{task}_answer").source = answer if answer is not None else VIOLATIONS[task]
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    for offset, source in enumerate(extra_cells, start=1):
        nb.cells.insert(first_code + offset, nbformat.v4.new_code_cell(source))
    position = next(i for i, c in enumerate(nb.cells) if grade_id(c) == f"{task}_answer")
    for offset, source in enumerate(after_answer, start=1):
        nb.cells.insert(position + offset, nbformat.v4.new_code_cell(source))
    return nb
