"""The evaluation classifier's training side: the CNN and its training (`model`), and the rebuild of the shipped evaluation assets (`assets`).

Heavy tier (torch). ``python -m gankit.training.classifier.assets --data PATH`` rebuilds
``gankit/assets/`` (the classifier ONNX and the reference statistics) that the light
evaluation package (`gankit.eval`) only ever loads. May import the data and eval
packages; nothing in the training engine imports it.
"""
