"""What the grader's environment runs with torch and numpy only, and exactly what code.zip ships (flattened).

Nothing here imports qd outside qd/core/, nor any third-party package but torch and numpy.
"""
