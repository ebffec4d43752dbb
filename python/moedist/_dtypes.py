"""16-bit floating-point formats as numpy arrays, and the dtype rules of the operators' arguments.

numpy has no bfloat16, so bf16 tensors are np.uint16 arrays holding the bits. fp16 tensors may be np.float16
arrays or np.uint16 bits. The conversions round to nearest, ties to even, exactly as moedist's kernels do
(src/util/numeric.h): float32 -> bfloat16 keeps NaN a quiet NaN, and overflow rounds to infinity.
"""

import numpy as np

__all__ = [
    "float32_to_bfloat16",
    "bfloat16_to_float32",
    "float32_to_float16",
    "float16_to_float32",
]

HALF_DTYPES = ("bfloat16", "float16")

# numpy dtype -> moedist dtype name, for the arguments whose dtype is not a 16-bit float.
_NUMPY_TO_MOEDIST = {
    np.dtype(np.float32): "float32",
    np.dtype(np.int8): "int8",
    np.dtype(np.int32): "int32",
    np.dtype(np.int64): "int64",
    np.dtype(np.bool_): "bool",
}


def float32_to_bfloat16(a):
    """bfloat16 bits (np.uint16, same shape) of float32 values, rounded to nearest even; NaN stays a quiet NaN.

    Inputs of other float dtypes are first converted to float32 (np.asarray(a, np.float32))."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    with np.errstate(over="ignore"):  # only NaN bit patterns can wrap, and those are replaced below
        rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    quiet_nan = (u >> np.uint32(16)) | np.uint32(0x0040)
    return np.where(nan, quiet_nan, rounded).astype(np.uint16)


def bfloat16_to_float32(a):
    """float32 values of bfloat16 bits (an np.uint16 array); exact."""
    bits = _bits("a", a)
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def float32_to_float16(a):
    """float16 bits (np.uint16, same shape) of float32 values, rounded to nearest even (IEEE); NaN stays a quiet NaN.

    Use .view(np.float16) for an np.float16 array."""
    f = np.ascontiguousarray(a, dtype=np.float32)
    u = f.view(np.uint32)
    with np.errstate(over="ignore"):  # overflow to infinity is the correct rounding
        bits = f.astype(np.float16).view(np.uint16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    if nan.any():  # numpy keeps a signaling NaN signaling; the kernels' conversion (IEEE) makes it quiet
        quiet = ((u >> np.uint32(16)) & np.uint32(0x8000)) | np.uint32(0x7E00) | ((u >> np.uint32(13)) & np.uint32(0x3FF))
        bits = np.where(nan, quiet.astype(np.uint16), bits)
    return bits


def float16_to_float32(a):
    """float32 values of float16 numbers (an np.float16 array, or np.uint16 bits); exact (NaN becomes quiet)."""
    if isinstance(a, np.ndarray) and a.dtype == np.float16:
        a = a.view(np.uint16)
    bits = _bits("a", a)
    f = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(f)
    if nan.any():
        f = np.where(nan, (f.view(np.uint32) | np.uint32(0x00400000)).view(np.float32), f)
    return f


def _bits(name, a):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of 16-bit values, got {type(a).__name__}")
    if a.dtype != np.uint16:
        raise TypeError(f"{name}: expected dtype uint16 (the 16-bit values' bits), got {a.dtype}")
    return a


def moedist_dtype(name, a, half):
    """The moedist dtype name of array `a` given for argument `name`; `half` is what np.uint16 arrays hold."""
    if a.dtype == np.uint16:
        return half
    if a.dtype == np.float16:
        return "float16"
    try:
        return _NUMPY_TO_MOEDIST[a.dtype]
    except KeyError:
        raise TypeError(f"{name}: numpy dtype {a.dtype} has no moedist equivalent") from None


def half_numpy_dtype(half):
    """The numpy dtype of arrays holding `half` values ("bfloat16" -> uint16 bits, "float16" -> float16)."""
    return np.dtype(np.uint16) if half == "bfloat16" else np.dtype(np.float16)
