"""Paddle side of the wildlife screening model toolchain (driven from src/training/*.ts)."""
