"""Paired image–text learning shared by chapters 3, 4 and 8: hashing with alternating updates
(:mod:`.hashing`), matching with adversarial updates (:mod:`.matching`), cached image features
(:mod:`.features`) and model complexity (:mod:`.complexity`). Chapter-free: the chapter modules
call these."""
