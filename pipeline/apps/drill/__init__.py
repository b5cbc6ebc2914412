"""The drill suite (`make drill`, `python -m pipeline drill`): bad input, crashes, outages, hostile rule
packs, API attacks and a soak, on embedded tansu + valkey and real worker processes (docs/reliability.md).
"""
