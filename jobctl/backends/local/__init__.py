"""The local backend: the detached Job controller, its pods, and the one interpreter of a rendered pod."""
