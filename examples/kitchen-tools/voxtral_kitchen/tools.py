"""The plugin's tools: schemas come from the signatures and the docstrings."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from assistant.tools import ToolContext, tool


class Unit(StrEnum):
    """Kitchen units, by mass or by volume."""

    GRAM = "g"
    KILOGRAM = "kg"
    OUNCE = "oz"
    POUND = "lb"
    MILLILITRE = "ml"
    LITRE = "l"
    CUP = "cup"
    TABLESPOON = "tbsp"
    TEASPOON = "tsp"


_GRAMS = {Unit.GRAM: 1.0, Unit.KILOGRAM: 1000.0, Unit.OUNCE: 28.3495, Unit.POUND: 453.592}
_MILLILITRES = {
    Unit.MILLILITRE: 1.0,
    Unit.LITRE: 1000.0,
    Unit.CUP: 240.0,
    Unit.TABLESPOON: 15.0,
    Unit.TEASPOON: 5.0,
}


@tool
def convert_units(amount: float, from_unit: Unit, to_unit: Unit) -> dict[str, object]:
    """Convert a kitchen quantity between units of mass or of volume.

    Args:
        amount: The quantity to convert.
        from_unit: The unit it is in.
        to_unit: The unit wanted.
    """
    for table in (_GRAMS, _MILLILITRES):
        if from_unit in table and to_unit in table:
            value = amount * table[from_unit] / table[to_unit]
            return {"amount": round(value, 2), "unit": to_unit.value}
    raise ValueError(
        f"cannot convert {from_unit.value} to {to_unit.value}: one is a mass, the other a volume"
    )


class Ingredient(BaseModel):
    """One line of a recipe."""

    name: str
    amount: float = Field(gt=0)
    unit: str = Field("", description="Free text such as 'g', 'cup' or '' for a count.")


@tool
def scale_recipe(
    ingredients: list[Ingredient], from_servings: int, to_servings: int
) -> list[Ingredient]:
    """Scale a recipe's ingredients to a different number of servings.

    Args:
        ingredients: The recipe's ingredients.
        from_servings: How many people the recipe is written for.
        to_servings: How many people to cook for.
    """
    factor = to_servings / from_servings
    return [
        Ingredient(name=i.name, amount=round(i.amount * factor, 2), unit=i.unit)
        for i in ingredients
    ]


_EGG_MINUTES = {"soft": 5, "medium": 7, "hard": 10}


@tool(timeout_s=2)
async def boil_egg(context: ToolContext, style: Literal["soft", "medium", "hard"]) -> str:
    """Start an egg timer; the assistant says when the egg is ready.

    Args:
        style: How firm the yolk should be.
    """
    minutes = _EGG_MINUTES[style]

    async def ring() -> None:
        await asyncio.sleep(minutes * 60)
        context.announce(f"Your {style}-boiled egg is ready.")

    context.tasks.start(ring(), name=context.task_name(f"egg:{style}"))
    return f"Egg timer started: {minutes} minutes for a {style}-boiled egg."
