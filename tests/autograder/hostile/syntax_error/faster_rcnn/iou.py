"""Not valid Python: the grader must still write a results.json."""

def iou(boxes1, boxes2)
    return boxes1 @ boxes2.T
