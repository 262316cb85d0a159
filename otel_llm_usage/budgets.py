"""Spending limits: `Budget` and `BudgetExceeded` (defined with their policy in `rollup.budgets`)."""

from .rollup.budgets import Action, Budget, BudgetExceeded, Scope

__all__ = ["Action", "Budget", "BudgetExceeded", "Scope"]
