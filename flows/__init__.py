"""The delivery flows (browse reminders, carts, step sequences, broadcasts, points notices).

Each flow brings its state, its pure decision, its message builder and its
report rows; the engine, the policy and the reporting are in `delivery`.
"""
