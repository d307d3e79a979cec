"""qd: train, sweep and ship small PyTorch classifiers for QuickDraw fruit doodles."""

CLASS_NAMES = ("apple", "banana", "grapes", "pineapple", "strawberry", "watermelon")
N_CLASSES = len(CLASS_NAMES)
IMAGE_SIDE = 28
