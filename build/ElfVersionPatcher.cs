#nullable enable
// Marks one symbol-version requirement of an ELF shared library as weak, so the dynamic loader accepts
// the library on a host whose libstdc++ lacks that version.
//
// Why: libLibTorchSharp.so in TorchSharp 0.107.0 was linked with GCC 13 and requires GLIBCXX_3.4.32;
// Debian 12's libstdc++ stops at GLIBCXX_3.4.30. The only symbol behind that version is
// _ZSt21ios_base_library_initv, an anchor GCC 13's <iostream> references so that the linker pulls in
// stream initialisation; no code calls it. A weak version requirement (VER_FLG_WEAK in the Vernaux
// entry of .gnu.version_r) makes the loader warn-and-continue instead of refusing the library.
// `patchelf --clear-symbol-version` is not enough: it leaves the Verneed entry, which still fails.
//
// This file is compiled twice: by MSBuild's RoslynCodeTaskFactory as the PatchLibTorchSharp build task
// (see LibTorchSharp.targets), and into the test project (PRETRAIN_TESTS defined) for its unit tests.
// Only the copy in the build output is patched, never the NuGet cache: the file is rewritten through a
// temporary file and a rename, so even a hard link into the cache would be left alone.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Pretrain.Build
{
    public sealed class ElfPatchResult
    {
        public bool Patched;           // the file was rewritten
        public bool AlreadyWeak;       // nothing to do: the requirement is weak already
        public bool NotRequired;       // the library does not require the version at all
        public string Message = "";
    }

    public static class ElfVersionPatcher
    {
        const uint ShtDynsym = 11, ShtGnuVerdef = 0x6ffffffd, ShtGnuVerneed = 0x6ffffffe, ShtGnuVersym = 0x6fffffff;
        const ushort VerFlagWeak = 0x2;

        /// <summary>
        /// Makes <paramref name="version"/> a weak requirement of <paramref name="libraryPath"/>, after
        /// checking that every symbol bound to that version is in <paramref name="allowedSymbols"/>
        /// (otherwise the library would really call code the host lacks, and we refuse).
        /// </summary>
        public static ElfPatchResult WeakenVersionRequirement(string libraryPath, string version, ICollection<string> allowedSymbols)
        {
            byte[] elf = File.ReadAllBytes(libraryPath);
            var sections = ReadSections(elf, libraryPath);
            var result = new ElfPatchResult();

            var found = FindRequirement(elf, sections, version);
            if (found == null) { result.NotRequired = true; result.Message = libraryPath + " does not require " + version; return result; }
            int flagsOffset = found.Value.flagsOffset; ushort versionIndex = found.Value.index;
            if ((U16(elf, flagsOffset) & VerFlagWeak) != 0) { result.AlreadyWeak = true; result.Message = version + " is already weak in " + libraryPath; return result; }

            var bound = SymbolsBoundTo(elf, sections, versionIndex);
            foreach (string symbol in bound)
                if (!allowedSymbols.Contains(symbol))
                    throw new InvalidDataException(libraryPath + ": symbol " + symbol + " needs " + version +
                        "; only " + string.Join(", ", allowedSymbols) + " may be weakened safely. Refusing to patch.");

            ushort flags = (ushort)(U16(elf, flagsOffset) | VerFlagWeak);
            elf[flagsOffset] = (byte)flags;
            elf[flagsOffset + 1] = (byte)(flags >> 8);

            string temporary = libraryPath + ".patching";
            File.WriteAllBytes(temporary, elf);
            File.Replace(temporary, libraryPath, null);   // a rename: never writes through a link
            result.Patched = true;
            result.Message = "weakened " + version + " in " + libraryPath + " (bound symbols: " + string.Join(", ", bound) + ")";
            return result;
        }

        /// <summary>True when the requirement of <paramref name="version"/> in the library is marked weak.</summary>
        public static bool IsWeak(string libraryPath, string version)
        {
            var r = Inspect(libraryPath, version);
            return r.HasValue && r.Value.weak;
        }

        /// <summary>The version names a shared library defines (its .gnu.version_d), e.g. the host's libstdc++.</summary>
        public static HashSet<string> DefinedVersions(string libraryPath)
        {
            byte[] elf = File.ReadAllBytes(libraryPath);
            var sections = ReadSections(elf, libraryPath);
            var names = new HashSet<string>(StringComparer.Ordinal);
            Section? verdef = Find(sections, ShtGnuVerdef);
            if (verdef == null) return names;
            Section strings = sections[(int)verdef.Link];
            int entry = checked((int)verdef.Offset);
            for (uint i = 0; i < verdef.Info; i++)
            {
                int aux = entry + (int)U32(elf, entry + 12);
                names.Add(CString(elf, strings, U32(elf, aux)));
                entry += (int)U32(elf, entry + 16);
            }
            return names;
        }

        /// <summary>The host's libstdc++.so.6, found where Debian, Ubuntu and Fedora keep it; null if absent.</summary>
        public static string? FindHostLibStdCxx()
        {
            string[] candidates =
            {
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
                "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
            };
            foreach (string c in candidates) if (File.Exists(c)) return c;
            return null;
        }

        static (bool weak, ushort index)? Inspect(string libraryPath, string version)
        {
            byte[] elf = File.ReadAllBytes(libraryPath);
            var found = FindRequirement(elf, ReadSections(elf, libraryPath), version);
            if (found == null) return null;
            return ((U16(elf, found.Value.flagsOffset) & VerFlagWeak) != 0, found.Value.index);
        }

        /// <summary>The Vernaux entry (in .gnu.version_r) that requires <paramref name="version"/>: its flags' offset and version index.</summary>
        static (int flagsOffset, ushort index)? FindRequirement(byte[] elf, List<Section> sections, string version)
        {
            Section? verneed = Find(sections, ShtGnuVerneed);
            if (verneed == null) return null;
            Section strings = sections[(int)verneed.Link];
            int entry = checked((int)verneed.Offset);
            for (uint i = 0; i < verneed.Info; i++)
            {
                ushort count = U16(elf, entry + 2);
                int aux = entry + (int)U32(elf, entry + 8);
                for (int j = 0; j < count; j++)
                {
                    if (CString(elf, strings, U32(elf, aux + 8)) == version) return (aux + 4, U16(elf, aux + 6));
                    aux += (int)U32(elf, aux + 12);
                }
                entry += (int)U32(elf, entry + 12);
            }
            return null;
        }

        static List<string> SymbolsBoundTo(byte[] elf, List<Section> sections, ushort versionIndex)
        {
            var names = new List<string>();
            Section? dynsym = Find(sections, ShtDynsym), versym = Find(sections, ShtGnuVersym);
            if (dynsym == null || versym == null) return names;
            Section strings = sections[(int)dynsym.Link];
            long count = (long)(dynsym.Size / 24);   // Elf64_Sym is 24 bytes
            for (long i = 0; i < count; i++)
            {
                ushort index = (ushort)(U16(elf, checked((int)(versym.Offset + (ulong)(i * 2)))) & 0x7fff);
                if (index == versionIndex)
                    names.Add(CString(elf, strings, U32(elf, checked((int)(dynsym.Offset + (ulong)(i * 24))))));
            }
            return names;
        }

        sealed class Section
        {
            public uint Type, Link, Info;
            public ulong Offset, Size;
        }

        static List<Section> ReadSections(byte[] elf, string path)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException(path + " is not an ELF file (bad magic)");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException(path + " is not a 64-bit little-endian ELF file (class " + elf[4] + ", data " + elf[5] + ")");
            ulong shoff = U64(elf, 0x28);
            ushort shentsize = U16(elf, 0x3a), shnum = U16(elf, 0x3c);
            if (shentsize != 64 || shoff + (ulong)shnum * 64 > (ulong)elf.Length)
                throw new InvalidDataException(path + ": section header table out of bounds (truncated file?)");
            var sections = new List<Section>(shnum);
            for (int i = 0; i < shnum; i++)
            {
                int h = checked((int)shoff + i * 64);
                var s = new Section { Type = U32(elf, h + 4), Offset = U64(elf, h + 24), Size = U64(elf, h + 32), Link = U32(elf, h + 40), Info = U32(elf, h + 44) };
                if (s.Type != 8 /* SHT_NOBITS */ && s.Offset + s.Size > (ulong)elf.Length)
                    throw new InvalidDataException(path + ": section " + i + " extends past the end of the file (truncated file?)");
                sections.Add(s);
            }
            return sections;
        }

        static Section? Find(List<Section> sections, uint type)
        {
            foreach (var s in sections) if (s.Type == type) return s;
            return null;
        }

        static string CString(byte[] elf, Section strings, uint offset)
        {
            int start = checked((int)(strings.Offset + offset)), end = start;
            while (end < elf.Length && elf[end] != 0) end++;
            return Encoding.ASCII.GetString(elf, start, end - start);
        }

        static ushort U16(byte[] b, int o) => (ushort)(b[o] | b[o + 1] << 8);
        static uint U32(byte[] b, int o) => (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24);
        static ulong U64(byte[] b, int o) => U32(b, o) | (ulong)U32(b, o + 4) << 32;
    }

#if !PRETRAIN_TESTS
    /// <summary>
    /// MSBuild task: patches libLibTorchSharp.so in an output folder when the host's libstdc++ does not
    /// define the version it requires. Does nothing on hosts that have it (Ubuntu 24.04, Debian 13).
    /// </summary>
    public sealed class PatchLibTorchSharp : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required] public string Library { get; set; } = "";
        public string Version { get; set; } = "GLIBCXX_3.4.32";
        public string AllowedSymbols { get; set; } = "_ZSt21ios_base_library_initv";

        public override bool Execute()
        {
            if (!File.Exists(Library)) return true;
            string? host = ElfVersionPatcher.FindHostLibStdCxx();
            if (host == null) { Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, "no host libstdc++.so.6 found; leaving " + Library + " as it is"); return true; }
            if (ElfVersionPatcher.DefinedVersions(host).Contains(Version)) return true;   // the host has it: no patch
            try
            {
                var result = ElfVersionPatcher.WeakenVersionRequirement(Library, Version, new HashSet<string>(AllowedSymbols.Split(';', ',')));
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High, "PatchLibTorchSharp: " + result.Message + " (host " + host + " lacks " + Version + ")");
                return true;
            }
            catch (InvalidDataException e)
            {
                Log.LogError("PatchLibTorchSharp: " + e.Message);
                return false;
            }
        }
    }
#endif
}
