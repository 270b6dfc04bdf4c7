"""Audit: which explanation of this model to trust, and why (``faithscope audit``).

:func:`audit` runs every applicable explainer on the user's model and data as a study with a
fixed plan (:mod:`~faithscope.audits.budgets`), and :mod:`~faithscope.audits.verdict` turns the
measurements into a verdict per explainer by a stated rule; :mod:`~faithscope.audits.render`
prints it and writes it as HTML (and ``audit.json``).
"""

from .budgets import BUDGETS, Budget
from .run import AuditResult, audit
from .verdict import GATES, RULE, ExplainerAudit, Gate, Verdict

__all__ = ["BUDGETS", "GATES", "RULE", "AuditResult", "Budget", "ExplainerAudit", "Gate",
           "Verdict", "audit"]
