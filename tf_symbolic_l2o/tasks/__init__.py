"""Functional optimizees: the Task protocol, MLP / CNN / ResNet networks, quadratics, and the task registry."""
