"""Per-owner budgets (PLOT_OWNER_LIMITS): an owner's job must fit the deployment's budgets and
its own; a budget that does not exist is refused when the settings load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.settings import Settings


def test_an_owners_budget_only_ever_lowers_the_deployments(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("PLOT_OWNER_LIMITS",
                       '{"alice": {"max_das_trainings": 10, "max_levels": 100}}')
    settings = Settings(max_levels=8)
    alice, bob = settings.admission_limits_for("alice"), settings.admission_limits_for("bob")
    assert alice.max_das_trainings == 10 and bob.max_das_trainings == settings.max_das_trainings
    assert alice.max_levels == 8  # 100 would raise the deployment's 8: the lower one holds
    assert bob == settings.admission_limits


def test_an_unknown_budget_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as error:
        Settings(owner_limits={"alice": {"max_gpus": 1}})
    assert "owner_limits" in str(error.value) and "max_gpus" in str(error.value)
