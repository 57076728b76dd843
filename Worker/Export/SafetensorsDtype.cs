namespace Pretrain.Worker.Export;

/// <summary>
/// An element type as the safetensors format names it (<c>"F32"</c>, <c>"I64"</c>, …) and its size in bytes. Our
/// tensor files store TorchSharp's ScalarType code, which is libtorch's numbering; <see cref="OfScalarType"/> maps
/// the code without TorchSharp, so an export never loads libtorch.
/// </summary>
public sealed record SafetensorsDtype(string Name, int Size)
{
    public static readonly SafetensorsDtype U8 = new("U8", 1);
    public static readonly SafetensorsDtype I8 = new("I8", 1);
    public static readonly SafetensorsDtype I16 = new("I16", 2);
    public static readonly SafetensorsDtype I32 = new("I32", 4);
    public static readonly SafetensorsDtype I64 = new("I64", 8);
    public static readonly SafetensorsDtype F16 = new("F16", 2);
    public static readonly SafetensorsDtype BF16 = new("BF16", 2);
    public static readonly SafetensorsDtype F32 = new("F32", 4);
    public static readonly SafetensorsDtype F64 = new("F64", 8);
    public static readonly SafetensorsDtype Bool = new("BOOL", 1);

    /// <summary>
    /// The safetensors dtype of ScalarType code <paramref name="code"/>, or null for the types safetensors has no
    /// name for (complex and quantized ones; no model of ours holds them).
    /// </summary>
    public static SafetensorsDtype? OfScalarType(byte code) => code switch
    {
        0 => U8,    // Byte
        1 => I8,    // Int8
        2 => I16,   // Int16
        3 => I32,   // Int32
        4 => I64,   // Int64: batch norm's num_batches_tracked, MoCo's queue_position
        5 => F16,   // Float16
        6 => F32,   // Float32: every parameter we train
        7 => F64,   // Float64
        11 => Bool, // Bool
        15 => BF16, // BFloat16
        _ => null,
    };
}
