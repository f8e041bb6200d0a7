"""Batches of submissions for the similarity report's tests and benchmark (kit tests only).

A submission is the stub (built from the reference as ``rcnn-kit release`` does) with some
TODO blocks filled. Four independent styles (A: Python loops over scalars, B: broadcasting
with unsqueeze and masks, C: module-level helper functions, D: unbind / flat-index
arithmetic) implement the six box-geometry TODOs; A, B and C also implement the RPN's
prediction network, each its own way. Blocks a style does not fill keep the stub's
``raise``, so independent styles share no code by construction. The reference's own
SOLUTION blocks give the fifth source.

Block keys are ``"<module>#<n>"``: the n-th TODO block of the module's stub.
"""

from __future__ import annotations

import ast
import io
import random
import re
import textwrap
import tokenize
import zipfile
from pathlib import Path

from rcnn_kit.course import PACKAGE_NAME, STUDENT_MODULES, reference_dir
from release_tool.markers import BEGIN_SOLUTION, END_SOLUTION, TODO_COMMENT, stub_source

#: The blocks the styles fill (module#n of the stub's TODO blocks).
GEOMETRY = ("iou#0", "nms#0", "anchors#0", "anchors#1", "deltas#0", "deltas#1")
PRED_NET = ("rpn#0", "rpn#1")

A = {
    "iou#0": """
        rows = []
        for a in boxes1.tolist():
            row = []
            area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
            for b in boxes2.tolist():
                w = min(a[2], b[2]) - max(a[0], b[0])
                h = min(a[3], b[3]) - max(a[1], b[1])
                inter = max(w, 0.0) * max(h, 0.0)
                union = area_a + max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0) - inter
                row.append(inter / union if union > 0 else 0.0)
            rows.append(row)
        return torch.tensor(rows, dtype=boxes1.dtype, device=boxes1.device).reshape(len(rows), boxes2.shape[0])
    """,
    "nms#0": """
        if scores.numel() == 0:
            return torch.zeros(0, dtype=torch.long, device=boxes.device)
        ranked = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
        chosen = []
        while ranked:
            best = ranked.pop(0)
            chosen.append(best)
            ranked = [i for i in ranked if float(iou(boxes[best:best + 1], boxes[i:i + 1])) <= iou_threshold]
        return torch.tensor(chosen, dtype=torch.long, device=boxes.device)
    """,
    "anchors#0": """
        b, c, h, w = feat_shape
        pts = []
        for row in range(h):
            for col in range(w):
                pts.append(((col + 0.5) * level_stride, (row + 0.5) * level_stride))
        location_coords[level_name] = torch.tensor(pts, dtype=dtype, device=device).view(h * w, 2)
    """,
    "anchors#1": """
        out = []
        side = stride_scale * level_stride
        for x, y in locations.tolist():
            for r in aspect_ratios:
                bw = side / r ** 0.5
                bh = side * side / bw
                out.append([x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2])
        anchors_per_fpn_level[level_name] = torch.tensor(out, dtype=locations.dtype, device=locations.device).view(-1, 4)
    """,
    "deltas#0": """
        out = torch.full((anchors.shape[0], 4), IGNORED_DELTA, dtype=anchors.dtype, device=anchors.device)
        for n in range(anchors.shape[0]):
            g = gt_boxes[n, :4].tolist()
            if g == [-1.0] * 4 or g == [IGNORED_DELTA] * 4:
                continue
            a = anchors[n].tolist()
            aw, ah = a[2] - a[0], a[3] - a[1]
            out[n, 0] = ((g[0] + g[2]) - (a[0] + a[2])) / (2 * aw)
            out[n, 1] = ((g[1] + g[3]) - (a[1] + a[3])) / (2 * ah)
            out[n, 2] = math.log((g[2] - g[0]) / aw)
            out[n, 3] = math.log((g[3] - g[1]) / ah)
        return out
    """,
    "deltas#1": """
        result = []
        for d, a in zip(deltas.tolist(), anchors.tolist()):
            aw, ah = a[2] - a[0], a[3] - a[1]
            cx = a[0] + aw / 2 + d[0] * aw
            cy = a[1] + ah / 2 + d[1] * ah
            bw = aw * math.exp(min(d[2], DELTA_SCALE_CLAMP))
            bh = ah * math.exp(min(d[3], DELTA_SCALE_CLAMP))
            result.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        return torch.tensor(result, dtype=deltas.dtype, device=deltas.device).reshape(-1, 4)
    """,
    "rpn#0": """
        blocks = []
        prev = in_channels
        for ch in stem_channels:
            conv = nn.Conv2d(prev, ch, 3, padding=1)
            nn.init.normal_(conv.weight, 0.0, RPN_INIT_STD)
            nn.init.constant_(conv.bias, 0.0)
            blocks.append(conv)
            blocks.append(nn.ReLU(inplace=True))
            prev = ch
        self.stem_rpn = nn.Sequential(*blocks)
        self.pred_obj = nn.Conv2d(prev, num_anchors, 1)
        self.pred_box = nn.Conv2d(prev, num_anchors * 4, 1)
        for head in (self.pred_obj, self.pred_box):
            nn.init.normal_(head.weight, 0.0, RPN_INIT_STD)
            nn.init.constant_(head.bias, 0.0)
    """,
    "rpn#1": """
        hidden = self.stem_rpn(feats)
        n = hidden.shape[0]
        object_logits[level_name] = self.pred_obj(hidden).permute(0, 2, 3, 1).flatten(1)
        boxreg_deltas[level_name] = self.pred_box(hidden).permute(0, 2, 3, 1).reshape(n, -1, 4)
    """,
}

B = {
    "iou#0": """
        lt_x = torch.max(boxes1[:, 0].unsqueeze(1), boxes2[:, 0].unsqueeze(0))
        lt_y = torch.max(boxes1[:, 1].unsqueeze(1), boxes2[:, 1].unsqueeze(0))
        rb_x = torch.min(boxes1[:, 2].unsqueeze(1), boxes2[:, 2].unsqueeze(0))
        rb_y = torch.min(boxes1[:, 3].unsqueeze(1), boxes2[:, 3].unsqueeze(0))
        overlap = torch.clamp(rb_x - lt_x, min=0) * torch.clamp(rb_y - lt_y, min=0)
        s1 = torch.clamp(boxes1[:, 2] - boxes1[:, 0], min=0) * torch.clamp(boxes1[:, 3] - boxes1[:, 1], min=0)
        s2 = torch.clamp(boxes2[:, 2] - boxes2[:, 0], min=0) * torch.clamp(boxes2[:, 3] - boxes2[:, 1], min=0)
        total = s1.unsqueeze(1) + s2.unsqueeze(0) - overlap
        out = torch.zeros_like(overlap)
        mask = total > 0
        out[mask] = overlap[mask] / total[mask]
        return out
    """,
    "nms#0": """
        n = boxes.shape[0]
        idx = torch.argsort(-scores, stable=True)
        ious = iou(boxes[idx], boxes[idx])
        alive = torch.ones(n, dtype=torch.bool, device=boxes.device)
        for k in range(n):
            if not alive[k]:
                continue
            later = torch.arange(n, device=boxes.device) > k
            alive &= ~(later & (ious[k] > iou_threshold))
        return idx[alive].to(torch.int64)
    """,
    "anchors#0": """
        h, w = feat_shape[-2], feat_shape[-1]
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        grid = torch.stack((xs.flatten(), ys.flatten()), dim=1).to(dtype)
        location_coords[level_name] = grid * level_stride + level_stride / 2
    """,
    "anchors#1": """
        n_loc = locations.shape[0]
        r = torch.tensor(aspect_ratios, dtype=locations.dtype, device=locations.device)
        s = float(stride_scale * level_stride)
        w = s / torch.sqrt(r)
        h = s * torch.sqrt(r)
        cx = locations[:, 0].unsqueeze(1).expand(n_loc, len(aspect_ratios))
        cy = locations[:, 1].unsqueeze(1).expand(n_loc, len(aspect_ratios))
        x1 = cx - w / 2
        y1 = cy - h / 2
        x2 = cx + w / 2
        y2 = cy + h / 2
        anchors_per_fpn_level[level_name] = torch.stack([x1, y1, x2, y2], dim=2).reshape(n_loc * len(aspect_ratios), 4)
    """,
    "deltas#0": """
        g = gt_boxes[:, :4].clone()
        skip = torch.logical_or((g == -1).all(dim=1), (g == IGNORED_DELTA).all(dim=1))
        g[skip] = anchors[skip]
        aw = anchors[:, 2] - anchors[:, 0]
        ah = anchors[:, 3] - anchors[:, 1]
        acx = anchors[:, 0] + aw / 2
        acy = anchors[:, 1] + ah / 2
        gw = g[:, 2] - g[:, 0]
        gh = g[:, 3] - g[:, 1]
        out = torch.stack([(g[:, 0] + gw / 2 - acx) / aw, (g[:, 1] + gh / 2 - acy) / ah,
                           torch.log(gw / aw), torch.log(gh / ah)], dim=1)
        out[skip] = IGNORED_DELTA
        return out
    """,
    "deltas#1": """
        width = anchors[:, 2] - anchors[:, 0]
        height = anchors[:, 3] - anchors[:, 1]
        d = deltas.clone()
        d[:, 2:] = torch.clamp(d[:, 2:], max=DELTA_SCALE_CLAMP)
        ncx = anchors[:, 0] + 0.5 * width + d[:, 0] * width
        ncy = anchors[:, 1] + 0.5 * height + d[:, 1] * height
        nw = width * torch.exp(d[:, 2])
        nh = height * torch.exp(d[:, 3])
        return torch.stack([ncx - nw / 2, ncy - nh / 2, ncx + nw / 2, ncy + nh / 2], dim=1)
    """,
    "rpn#0": """
        mods = []
        for c_in, c_out in zip([in_channels] + list(stem_channels[:-1]), stem_channels):
            mods += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1), nn.ReLU()]
        self.stem_rpn = nn.Sequential(*mods)
        last = stem_channels[-1] if len(stem_channels) else in_channels
        self.pred_obj = nn.Conv2d(last, num_anchors, kernel_size=1)
        self.pred_box = nn.Conv2d(last, 4 * num_anchors, kernel_size=1)
        for m in [*self.stem_rpn, self.pred_obj, self.pred_box]:
            if isinstance(m, nn.Conv2d):
                torch.nn.init.normal_(m.weight, std=RPN_INIT_STD)
                torch.nn.init.zeros_(m.bias)
    """,
    "rpn#1": """
        z = self.stem_rpn(feats)
        B, _, H, W = z.shape
        o = self.pred_obj(z)
        d = self.pred_box(z).view(B, self.num_anchors, 4, H, W)
        object_logits[level_name] = o.permute(0, 2, 3, 1).contiguous().view(B, -1)
        boxreg_deltas[level_name] = d.permute(0, 3, 4, 1, 2).contiguous().view(B, -1, 4)
    """,
}

C = {
    "iou#0": """
        inter = _pairwise_intersection(boxes1, boxes2)
        union = _area(boxes1)[:, None] + _area(boxes2)[None, :] - inter
        safe = torch.where(union > 0, union, torch.ones_like(union))
        return torch.where(union > 0, inter / safe, torch.zeros_like(inter))
    """,
    "nms#0": """
        remaining = scores.argsort(descending=True, stable=True)
        picked = []
        while remaining.numel() > 0:
            top = remaining[0]
            picked.append(top)
            if remaining.numel() == 1:
                break
            ov = iou(boxes[top].unsqueeze(0), boxes[remaining[1:]]).squeeze(0)
            remaining = remaining[1:][ov <= iou_threshold]
        if not picked:
            return torch.empty(0, dtype=torch.int64, device=boxes.device)
        return torch.stack(picked).long()
    """,
    "anchors#0": """
        rows, cols = feat_shape[2], feat_shape[3]
        half = 0.5 * level_stride
        x_centers = torch.arange(cols, device=device, dtype=dtype) * level_stride + half
        y_centers = torch.arange(rows, device=device, dtype=dtype) * level_stride + half
        location_coords[level_name] = torch.cartesian_prod(y_centers, x_centers).flip(1)
    """,
    "anchors#1": """
        shapes = _anchor_shapes(float((stride_scale * level_stride) ** 2), aspect_ratios, locations)
        corners = torch.cat([locations.repeat_interleave(len(aspect_ratios), dim=0)] * 2, dim=1)
        offsets = torch.cat([-shapes / 2, shapes / 2], dim=1).repeat(locations.shape[0], 1)
        anchors_per_fpn_level[level_name] = corners + offsets
    """,
    "deltas#0": """
        target = gt_boxes[..., :4]
        invalid = ((target == -1).sum(dim=1) == 4) | ((target == IGNORED_DELTA).sum(dim=1) == 4)
        a = _to_cxcywh(anchors)
        g = _to_cxcywh(torch.where(invalid[:, None], anchors, target))
        result = torch.cat([(g[:, :2] - a[:, :2]) / a[:, 2:], torch.log(g[:, 2:] / a[:, 2:])], dim=1)
        return torch.where(invalid[:, None], torch.full_like(result, IGNORED_DELTA), result)
    """,
    "deltas#1": """
        a = _to_cxcywh(anchors)
        centre = a[:, :2] + deltas[:, :2] * a[:, 2:]
        size = a[:, 2:] * deltas[:, 2:].clamp(max=DELTA_SCALE_CLAMP).exp()
        return torch.cat([centre - size / 2, centre + size / 2], dim=1)
    """,
    "rpn#0": """
        self.stem_rpn = _conv_relu_stack([in_channels, *stem_channels])
        width = ([in_channels, *stem_channels])[-1]
        self.pred_obj = nn.Conv2d(width, num_anchors, kernel_size=(1, 1))
        self.pred_box = nn.Conv2d(width, num_anchors * 4, kernel_size=(1, 1))
        for layer in (self.pred_obj, self.pred_box):
            torch.nn.init.normal_(layer.weight, mean=0, std=RPN_INIT_STD)
            torch.nn.init.zeros_(layer.bias)
    """,
    "rpn#1": """
        trunk = self.stem_rpn(feats)
        logits = self.pred_obj(trunk)
        regress = self.pred_box(trunk)
        object_logits[level_name] = logits.movedim(1, -1).reshape(logits.shape[0], -1)
        boxreg_deltas[level_name] = regress.movedim(1, -1).reshape(regress.shape[0], -1, 4)
    """,
}

#: Module-level helper functions style C adds (appended to the module).
C_HELPERS = {
    "iou": """
        def _area(b):
            wh = (b[:, 2:4] - b[:, 0:2]).clamp(min=0)
            return wh[:, 0] * wh[:, 1]


        def _pairwise_intersection(p, q):
            x_lo = torch.maximum(p[:, 0].view(-1, 1), q[:, 0].view(1, -1))
            y_lo = torch.maximum(p[:, 1].view(-1, 1), q[:, 1].view(1, -1))
            x_hi = torch.minimum(p[:, 2].view(-1, 1), q[:, 2].view(1, -1))
            y_hi = torch.minimum(p[:, 3].view(-1, 1), q[:, 3].view(1, -1))
            return (x_hi - x_lo).clamp(min=0) * (y_hi - y_lo).clamp(min=0)
    """,
    "anchors": """
        def _anchor_shapes(area, ratios, like):
            out = []
            for ratio in ratios:
                width = (area / ratio) ** 0.5
                out.append([width, area / width])
            return like.new_tensor(out)
    """,
    "deltas": """
        def _to_cxcywh(b):
            return torch.stack([(b[:, 0] + b[:, 2]) * 0.5, (b[:, 1] + b[:, 3]) * 0.5,
                                b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1)
    """,
    "rpn": """
        def _conv_relu_stack(channels):
            layers = []
            for c_in, c_out in zip(channels[:-1], channels[1:]):
                conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
                torch.nn.init.normal_(conv.weight, mean=0, std=RPN_INIT_STD)
                torch.nn.init.zeros_(conv.bias)
                layers.extend([conv, nn.ReLU()])
            return nn.Sequential(*layers)
    """,
}

D = {
    "iou#0": """
        x1a, y1a, x2a, y2a = boxes1.unbind(-1)
        x1b, y1b, x2b, y2b = boxes2.unbind(-1)
        iw = (torch.min(x2a[:, None], x2b[None]) - torch.max(x1a[:, None], x1b[None])).clamp_min(0)
        ih = (torch.min(y2a[:, None], y2b[None]) - torch.max(y1a[:, None], y1b[None])).clamp_min(0)
        i = iw * ih
        u = ((x2a - x1a).clamp_min(0) * (y2a - y1a).clamp_min(0))[:, None] + (
            (x2b - x1b).clamp_min(0) * (y2b - y1b).clamp_min(0))[None] - i
        return torch.nan_to_num(i / u, nan=0.0, posinf=0.0)
    """,
    "nms#0": """
        count = scores.shape[0]
        perm = scores.sort(descending=True, stable=True)[1]
        over = iou(boxes[perm], boxes[perm]).gt(iou_threshold).tril(-1)
        flags = []
        for r in range(count):
            hit = any(flags[c] and bool(over[r, c]) for c in range(r))
            flags.append(not hit)
        mask = torch.tensor(flags, dtype=torch.bool, device=boxes.device)
        return perm[mask] if count else perm.new_zeros(0)
    """,
    "anchors#0": """
        H, W = int(feat_shape[2]), int(feat_shape[3])
        idx = torch.arange(H * W, device=device)
        col = (idx % W).to(dtype)
        row = torch.div(idx, W, rounding_mode="floor").to(dtype)
        location_coords[level_name] = (torch.stack([col, row], -1) + 0.5) * level_stride
    """,
    "anchors#1": """
        base = stride_scale * level_stride
        ar = locations.new_tensor(list(aspect_ratios))
        half_w = base / ar.sqrt() / 2
        half_h = base * ar.sqrt() / 2
        half = torch.stack([half_w, half_h, half_w, half_h], -1)
        sign = locations.new_tensor([-1.0, -1.0, 1.0, 1.0])
        centre4 = locations.repeat(1, 2)
        anchors_per_fpn_level[level_name] = (centre4[:, None, :] + sign * half[None]).flatten(0, 1)
    """,
    "deltas#0": """
        gt4 = gt_boxes[:, :4]
        bg = gt4.eq(-1).all(1)
        neutral = gt4.eq(IGNORED_DELTA).all(1)
        valid = ~(bg | neutral)
        res = anchors.new_full((anchors.shape[0], 4), IGNORED_DELTA)
        A = anchors[valid]
        G = gt4[valid]
        sa = A[:, 2:] - A[:, :2]
        sg = G[:, 2:] - G[:, :2]
        res[valid] = torch.cat(((G[:, :2] + 0.5 * sg - A[:, :2] - 0.5 * sa) / sa, (sg / sa).log()), 1)
        return res
    """,
    "deltas#1": """
        shift, scale = deltas[:, :2], deltas[:, 2:].clamp(max=DELTA_SCALE_CLAMP)
        extent = anchors[:, 2:] - anchors[:, :2]
        c = anchors[:, :2] + 0.5 * extent + shift * extent
        s = extent * scale.exp()
        return torch.cat((c - 0.5 * s, c + 0.5 * s), 1)
    """,
}

#: Local names of style A and what the renamed copy calls them.
A_RENAMES = {
    "rows": "matrix", "row": "line", "a": "box_p", "b": "box_q", "area_a": "size_p", "w": "iw", "h": "ih",
    "inter": "common", "union": "joint", "ranked": "queue", "best": "head_idx", "chosen": "kept", "i": "j",
    "pts": "centres", "col": "cx_idx", "c": "chans", "out": "collected", "side": "base_len", "x": "px", "y": "py",
    "r": "ratio", "bw": "box_w", "bh": "box_h", "n": "k", "g": "target", "aw": "pw", "ah": "ph",
    "result": "decoded", "d": "delta", "cx": "mid_x", "cy": "mid_y", "blocks": "layer_list", "prev": "c_prev",
    "ch": "c_next", "conv": "layer", "head": "predictor", "hidden": "trunk_out",
}


def reference_blocks() -> dict[str, str]:
    """The reference's SOLUTION blocks, keyed ``module#n`` (dedented)."""
    blocks: dict[str, str] = {}
    for module in STUDENT_MODULES:
        text = (reference_dir() / f"{module}.py").read_text()
        pattern = re.compile(rf"^[ \t]*{re.escape(BEGIN_SOLUTION)}\n(.*?)^[ \t]*{re.escape(END_SOLUTION)}\n", re.M | re.S)
        for n, match in enumerate(pattern.finditer(text)):
            blocks[f"{module}#{n}"] = textwrap.dedent(match.group(1))
    return blocks


def stubs() -> dict[str, str]:
    """The stub text of each module, as the release has it."""
    return {m: stub_source((reference_dir() / f"{m}.py").read_text(), f"{PACKAGE_NAME}/{m}.py") for m in STUDENT_MODULES}


def fill(stub_texts: dict[str, str], blocks: dict[str, str], helpers: dict[str, str] | None = None) -> dict[str, str]:
    """Module texts: each stub with the TODO blocks in ``blocks`` replaced by their code, helpers appended."""
    out = {}
    for module, text in stub_texts.items():
        lines = text.splitlines(keepends=True)
        filled: list[str] = []
        n = 0
        i = 0
        while i < len(lines):
            if lines[i].strip() == TODO_COMMENT:
                indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                code = blocks.get(f"{module}#{n}")
                n += 1
                if code is not None:
                    filled.append(textwrap.indent(textwrap.dedent(code).strip("\n") + "\n", indent))
                    i += 2  # the TODO comment and the raise
                    continue
            filled.append(lines[i])
            i += 1
        extra = (helpers or {}).get(module)
        out[module] = "".join(filled) + ("\n\n" + textwrap.dedent(extra).strip("\n") + "\n" if extra else "")
    return out


def rename(code: str, mapping: dict[str, str]) -> str:
    """``code`` with every bare identifier in ``mapping`` renamed (attributes and keyword arguments kept)."""
    lines = code.splitlines(keepends=True)
    tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    edits = []
    depth = 0
    for k, tok in enumerate(tokens):
        depth += (tok.string in ("(", "[", "{")) - (tok.string in (")", "]", "}"))
        before = tokens[k - 1].string if k else ""
        keyword_argument = depth > 0 and before in ("(", ",") and k + 1 < len(tokens) and tokens[k + 1].string == "="
        if tok.type == tokenize.NAME and tok.string in mapping and before != "." and not keyword_argument:
            edits.append(tok)
    for tok in reversed(edits):
        row, col = tok.start
        line = lines[row - 1]
        lines[row - 1] = line[:col] + mapping[tok.string] + line[col + len(tok.string) :]
    return "".join(lines)


def move_function_last(text: str, name: str) -> str:
    """``text`` with the top-level function ``name`` moved to the end of the module."""
    node = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == name)
    lines = text.splitlines(keepends=True)
    first = node.lineno - 1 - len(node.decorator_list)
    chunk = lines[first : node.end_lineno]
    rest = lines[:first] + lines[node.end_lineno :]
    return "".join(rest).rstrip("\n") + "\n\n\n" + "".join(chunk)


def write_submission(dest: Path, modules: dict[str, str], layout: str = "package") -> Path:
    """Write ``modules`` as a submission: a folder holding ``faster_rcnn/`` ("package"), the six files
    flat ("flat"), or a zip nested one folder down ("zip"). Returns the folder or zip."""
    if layout == "zip":
        path = dest.with_suffix(".zip")
        with zipfile.ZipFile(path, "w") as archive:
            for module, text in modules.items():
                archive.writestr(f"hw5/{PACKAGE_NAME}/{module}.py", text)
        return path
    folder = dest / PACKAGE_NAME if layout == "package" else dest
    folder.mkdir(parents=True)
    for module, text in modules.items():
        (folder / f"{module}.py").write_text(text)
    return dest


def mutated(rng: random.Random, stub_texts: dict[str, str], reference: dict[str, str]) -> dict[str, str]:
    """A random submission: each geometry and prediction-net block from a random source, locals renamed."""
    sources = {"A": A, "B": B, "C": C, "D": D, "R": reference}
    blocks: dict[str, str] = {}
    helpers: dict[str, str] = {}
    for key in GEOMETRY + PRED_NET + tuple(k for k in reference if k.startswith(("rpn#", "detector#"))):
        name = rng.choice([s for s in sources if key in sources[s]] + ["stub"])
        if name == "stub":
            continue
        code = sources[name][key]
        mapping = {old: f"{new}{rng.randint(0, 9)}" for old, new in A_RENAMES.items() if rng.random() < 0.5}
        blocks[key] = rename(textwrap.dedent(code), mapping)
        module = key.split("#")[0]
        if name == "C" and module in C_HELPERS:
            helpers[module] = C_HELPERS[module]
    return fill(stub_texts, blocks, helpers)


def swap_lines(code: str, *swaps: tuple[int, int]) -> str:
    """``code`` (one statement a line) with the lines of each ``(i, j)`` swapped, in order."""
    lines = textwrap.dedent(code).strip("\n").splitlines()
    for i, j in swaps:
        lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines) + "\n"


#: Style C's blocks with statements that commute put in another order.
C_REORDERED = {
    **C,
    "nms#0": swap_lines(C["nms#0"], (0, 1)),
    "anchors#0": swap_lines(C["anchors#0"], (2, 3)),
    "anchors#1": swap_lines(C["anchors#1"], (0, 1)),
    "deltas#0": swap_lines(C["deltas#0"], (1, 2), (0, 1)),
    "deltas#1": swap_lines(C["deltas#1"], (1, 2)),
    "rpn#0": swap_lines(C["rpn#0"], (0, 1), (2, 3)),
    "rpn#1": swap_lines(C["rpn#1"], (1, 2)),
}

#: Copy pairs of :func:`build_batch` (names as the report gives them).
COPY_PAIRS = frozenset({
    frozenset({"A.zip", "A_renamed"}),
    frozenset({"C", "C_reordered"}),
    frozenset({"ref_copy.zip", "public:reference"}),
    frozenset({"D", "public:d_online.zip"}),
})


def with_comments(code: str) -> str:
    """``code`` with a comment after every other line and blank lines between statements."""
    lines = textwrap.dedent(code).strip("\n").splitlines()
    return "\n".join(f"{line}  # my step {n}" if n % 2 else f"{line}\n" for n, line in enumerate(lines)) + "\n"


def build_batch(root: Path) -> tuple[Path, Path]:
    """Write a batch of submissions and a folder of public solutions under ``root``.

    Independent: A (zip), B (package folder), C (flat files with helpers), D (package).
    Copies: A_renamed (A with every local renamed, comments added), C_reordered (C with
    functions moved in their files and commuting statements swapped), ref_copy.zip (the
    reference's solution blocks), and the public ``d_online.zip`` (D with comments). Also
    ``stub_only`` (nothing implemented). Returns ``(submissions folder, public folder)``.
    """
    subs, public = root / "submissions", root / "public"
    subs.mkdir(parents=True)
    public.mkdir(parents=True)
    stub_texts = stubs()
    write_submission(subs / "A", fill(stub_texts, A), "zip")
    write_submission(subs / "B", fill(stub_texts, B), "package")
    write_submission(subs / "C", fill(stub_texts, C, C_HELPERS), "flat")
    write_submission(subs / "D", fill(stub_texts, D), "package")
    renamed = {key: with_comments(rename(textwrap.dedent(code), A_RENAMES)) for key, code in A.items()}
    write_submission(subs / "A_renamed", fill(stub_texts, renamed), "package")
    reordered = fill(stub_texts, C_REORDERED, C_HELPERS)
    for module, function in (("iou", "iou"), ("anchors", "get_fpn_location_coords"), ("deltas", "rcnn_get_deltas_from_anchors")):
        reordered[module] = move_function_last(reordered[module], function)
    write_submission(subs / "C_reordered", reordered, "package")
    write_submission(subs / "ref_copy", fill(stub_texts, reference_blocks()), "zip")
    write_submission(subs / "stub_only", stub_texts, "flat")
    write_submission(public / "d_online", fill(stub_texts, {k: with_comments(v) for k, v in D.items()}), "zip")
    reference = public / "reference" / PACKAGE_NAME
    reference.mkdir(parents=True)
    for module in STUDENT_MODULES:
        (reference / f"{module}.py").write_text((reference_dir() / f"{module}.py").read_text())
    return subs, public
