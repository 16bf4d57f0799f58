"""The scenario, evaluation and training configs that ship with predliq.

Installed as the package ``predliq_configs`` so that a wheel finds them by name
(``predliq simulate --config cascade``); pipelines/shipped.py resolves the names.
"""
