"""The customs world simulator: a recorded or live stream of declarations, logistics and GPS tracks with
labelled fraud typologies, and inspection results that arrive late and only for what was inspected."""
