using System.Reflection;
using System.Reflection.Emit;
using KVLink.Core.Engine;
using TorchSharp;

namespace KVLink.Core.Tests.Architecture;

/// <summary>
/// No temporary TorchSharp <see cref="Scalar"/> reaches a native call from KVLink.Core. A Scalar is a native handle
/// with a finalizer and belongs to no dispose scope: one made for a call (an implicit <c>x + 1e-5</c>, or the alpha = 1
/// that <c>Tensor.add(Tensor)</c> makes inside TorchSharp) is unreachable once its handle is read, so a GC started by any
/// other thread during the native call lets the finalizer thread free it while LibTorch still reads it. That is the
/// native failure of issue 28 ("Expected false to be true ... toFloat", "INTERNAL ASSERT FAILED at c10/core/Scalar.h"),
/// about 1 in 1,000 long requests. The rule is checked on the compiled IL of KVLink.Core: no method calls a Scalar
/// conversion operator, nor a TorchSharp method whose own IL (transitively) makes one. Held scalars are
/// <c>Model.HeldScalars</c> or a <c>using</c> local made with <c>ToScalar()</c>.
/// </summary>
public sealed class HeldScalarsTests
{
    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static).Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    [Fact]
    public void KVLink_Core_passes_no_temporary_scalar_to_TorchSharp()
    {
        var makesScalar = new Dictionary<MethodBase, bool>();
        var offenders = new List<string>();
        foreach (var type in typeof(KvLinkEngine).Assembly.GetTypes())
            foreach (var method in Methods(type))
                foreach (var callee in Callees(method))
                    if (IsScalarConversion(callee) || (callee.DeclaringType?.Assembly == typeof(torch).Assembly && MakesTemporaryScalar(callee, makesScalar, 0)))
                        offenders.Add($"{type.FullName}.{method.Name} calls {callee.DeclaringType?.Name}.{callee.Name}({string.Join(", ", callee.GetParameters().Select(p => p.ParameterType.Name))})");
        Assert.True(offenders.Count == 0, "Temporary scalars passed to native calls:\n" + string.Join("\n", offenders.Distinct().Order(StringComparer.Ordinal)));
    }

    [Fact]
    public void The_check_sees_an_implicit_scalar_and_one_hidden_inside_TorchSharp()
    {
        // Proof that the scan can fail: these two shapes are exactly what the rule forbids.
        var cache = new Dictionary<MethodBase, bool>();
        var implicitAdd = typeof(HeldScalarsTests).GetMethod(nameof(ImplicitScalar), BindingFlags.NonPublic | BindingFlags.Static)!;
        Assert.Contains(Callees(implicitAdd), IsScalarConversion);
        var plusDouble = typeof(torch.Tensor).GetMethod("op_Addition", [typeof(torch.Tensor), typeof(double)])!;
        Assert.True(MakesTemporaryScalar(plusDouble, cache, 0));
        var addTensor = typeof(torch.Tensor).GetMethod(nameof(torch.Tensor.add), [typeof(torch.Tensor)])!;
        Assert.True(MakesTemporaryScalar(addTensor, cache, 0));
        var addHeld = typeof(torch.Tensor).GetMethod(nameof(torch.Tensor.add), [typeof(torch.Tensor), typeof(Scalar)])!;
        Assert.False(MakesTemporaryScalar(addHeld, cache, 0));
    }

    private static torch.Tensor ImplicitScalar(torch.Tensor x) => x.add(1e-5, 1);

    private static IEnumerable<MethodBase> Methods(Type type) =>
        type.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly).Cast<MethodBase>()
            .Concat(type.GetConstructors(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly));

    // KVLink.Core's own ToScalar() calls are allowed: each is a held scalar (a field or a using local).
    private static bool IsScalarConversion(MethodBase m) => m.DeclaringType == typeof(Scalar) && m.Name == "op_Implicit";

    /// <summary>
    /// True when TorchSharp's <paramref name="m"/> makes a Scalar that it does not hold (a conversion operator or
    /// <c>ToScalar</c> in its IL, or a call to a method that does), followed a few calls deep.
    /// </summary>
    private static bool MakesTemporaryScalar(MethodBase m, Dictionary<MethodBase, bool> cache, int depth)
    {
        if (cache.TryGetValue(m, out bool known)) return known;
        if (depth > 4 || m.DeclaringType?.Assembly != typeof(torch).Assembly) return false;
        cache[m] = false; // recursion guard
        bool makes = false;
        foreach (var callee in Callees(m))
        {
            if (callee.DeclaringType == typeof(Scalar) && callee.Name == "op_Implicit"
                || callee.DeclaringType == typeof(ScalarExtensionMethods) && callee.Name == nameof(ScalarExtensionMethods.ToScalar)
                || MakesTemporaryScalar(callee, cache, depth + 1))
            {
                makes = true;
                break;
            }
        }
        return cache[m] = makes;
    }

    /// <summary>The methods <paramref name="m"/>'s IL calls (call, callvirt, newobj, ldftn).</summary>
    private static IEnumerable<MethodBase> Callees(MethodBase m)
    {
        byte[]? il;
        try { il = m.GetMethodBody()?.GetILAsByteArray(); }
        catch (Exception) { yield break; }
        if (il is null) yield break;
        Type[]? typeArgs = m.DeclaringType is { IsGenericType: true } t ? t.GetGenericArguments() : null;
        Type[]? methodArgs = m.IsGenericMethod ? m.GetGenericArguments() : null;
        for (int i = 0; i < il.Length;)
        {
            short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            i += il[i] == 0xFE ? 2 : 1;
            var op = OpCodesByValue[value];
            if (op.OperandType == OperandType.InlineMethod)
            {
                int token = BitConverter.ToInt32(il, i);
                MethodBase? callee = null;
                try { callee = m.Module.ResolveMethod(token, typeArgs, methodArgs); }
                catch (Exception) { }
                if (callee is not null) yield return callee;
            }
            i += op.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
        }
    }
}
