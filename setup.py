"""The one native part: the result-masking row walk (gateway/masking/_rowwalk.c); everything else is in
pyproject.toml. Its pure-Python twin (gateway/masking/rowwalk.py) runs where the extension is not built."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gateway.masking._rowwalk",
            ["gateway/masking/_rowwalk.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
            libraries=["m"],
        )
    ]
)
