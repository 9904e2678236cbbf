package userns

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/ursb/ursb/spec"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// bpfMaxInsns is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const bpfMaxInsns = 4096

// seccompArches are the SCMP_ARCH_* names libseccomp knows. A profile may
// list any of them; those this machine cannot run are ignored, as
// libseccomp ignores them on it.
var seccompArches = map[string]bool{
	"SCMP_ARCH_X86": true, "SCMP_ARCH_X86_64": true, "SCMP_ARCH_X32": true,
	"SCMP_ARCH_ARM": true, "SCMP_ARCH_AARCH64": true,
	"SCMP_ARCH_MIPS": true, "SCMP_ARCH_MIPS64": true, "SCMP_ARCH_MIPS64N32": true,
	"SCMP_ARCH_MIPSEL": true, "SCMP_ARCH_MIPSEL64": true, "SCMP_ARCH_MIPSEL64N32": true,
	"SCMP_ARCH_PPC": true, "SCMP_ARCH_PPC64": true, "SCMP_ARCH_PPC64LE": true,
	"SCMP_ARCH_S390": true, "SCMP_ARCH_S390X": true, "SCMP_ARCH_PARISC": true,
	"SCMP_ARCH_PARISC64": true, "SCMP_ARCH_RISCV64": true, "SCMP_ARCH_LOONGARCH64": true,
	"SCMP_ARCH_M68K": true, "SCMP_ARCH_SH": true, "SCMP_ARCH_SHEB": true,
}

//go:generate go run ../internal/syscalltable zsyscalls.go

// profileTables gives the system call numbers of each convention in abis,
// sorted by name.
var profileTables = map[uint32][]sysno{
	unix.AUDIT_ARCH_X86_64:  syscallsX86_64[:],
	unix.AUDIT_ARCH_I386:    syscallsI386[:],
	unix.AUDIT_ARCH_AARCH64: syscallsAArch64[:],
}

// lookupSyscall is name's number in table.
func lookupSyscall(table []sysno, name string) (uint32, bool) {
	i, ok := slices.BinarySearchFunc(table, name, func(s sysno, name string) int { return strings.Compare(s.name, name) })
	if !ok {
		return 0, false
	}
	return table[i].nr, true
}

// scmpArch is the SCMP_ARCH_* name of an audit architecture in abis.
var scmpArch = map[uint32]string{
	unix.AUDIT_ARCH_X86_64:  "SCMP_ARCH_X86_64",
	unix.AUDIT_ARCH_I386:    "SCMP_ARCH_X86",
	unix.AUDIT_ARCH_AARCH64: "SCMP_ARCH_AARCH64",
}

// seccompFlags are the filter flags a profile may ask for. TSYNC is always
// set (see loadFilter); the flags of a notify listener are refused with it.
var seccompFlags = map[string]uintptr{
	"SECCOMP_FILTER_FLAG_TSYNC":      unix.SECCOMP_FILTER_FLAG_TSYNC,
	"SECCOMP_FILTER_FLAG_LOG":        unix.SECCOMP_FILTER_FLAG_LOG,
	"SECCOMP_FILTER_FLAG_SPEC_ALLOW": unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
}

// SeccompFeatures is what of the spec's seccomp profiles ursb applies, for
// the OCI features command.
func SeccompFeatures() *features.Seccomp {
	yes := true
	var arches []string
	for _, a := range abis {
		if name, ok := scmpArch[a.arch]; ok {
			arches = append(arches, name)
		}
	}
	return &features.Seccomp{
		Enabled:        &yes,
		Actions:        []string{"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"},
		Operators:      sortedKeys(argOps),
		Archs:          arches,
		KnownFlags:     sortedKeys(seccompFlags),
		SupportedFlags: sortedKeys(seccompFlags),
	}
}

// CheckSeccompProfile reports what in p ursb cannot apply, before a
// sandbox is started with it.
func CheckSeccompProfile(p *spec.SeccompProfile) error {
	_, _, err := profileFilter(p)
	return err
}

// profileFilter compiles p into a filter for every system call convention
// of this machine that p lists (the native one always, as libseccomp
// does), and the flags to load it with. A call of another convention fails
// with ENOSYS, as under ursb's default filter; so does every x32 call,
// which Debian's kernels refuse anyway (syscall.x32=n), and whose numbers
// partly alias the x86-64 ones.
func profileFilter(p *spec.SeccompProfile) ([]bpf.Instruction, uintptr, error) {
	if p == nil {
		return nil, 0, errors.New("no seccomp profile given")
	}
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_TSYNC)
	for _, f := range p.Flags {
		v, ok := seccompFlags[f]
		if !ok {
			return nil, 0, fmt.Errorf("seccomp flag %s is not supported: ursb applies %s", f, strings.Join(sortedKeys(seccompFlags), ", "))
		}
		flags |= v
	}
	listed := map[string]bool{}
	for _, a := range p.Architectures {
		if !seccompArches[a] {
			return nil, 0, fmt.Errorf("seccomp architecture %q is unknown; libseccomp's names are SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64 and the like", a)
		}
		listed[a] = true
	}
	def, err := seccompAction(p.DefaultAction, p.DefaultErrno)
	if err != nil {
		return nil, 0, fmt.Errorf("seccomp defaultAction: %w", err)
	}
	rules := make([]rule, 0, len(p.Syscalls))
	for i, r := range p.Syscalls {
		ret, err := seccompAction(r.Action, r.Errno)
		if err != nil {
			return nil, 0, fmt.Errorf("seccomp rule %d (%s): %w", i, strings.Join(r.Names, ", "), err)
		}
		for _, a := range r.Args {
			if a.Index > 5 {
				return nil, 0, fmt.Errorf("seccomp rule %d (%s) tests argument %d; system calls have six, from 0", i, strings.Join(r.Names, ", "), a.Index)
			}
			if _, ok := argOps[a.Op]; !ok {
				return nil, 0, fmt.Errorf("seccomp rule %d (%s): comparison %q is unknown; use one of SCMP_CMP_EQ, NE, LT, LE, GT, GE, MASKED_EQ", i, strings.Join(r.Names, ", "), a.Op)
			}
		}
		rules = append(rules, rule{names: r.Names, ret: ret, args: r.Args})
	}

	var prog program
	for i, a := range abis {
		table := profileTables[a.arch]
		if table == nil || (i > 0 && !listed[scmpArch[a.arch]]) {
			continue
		}
		next := prog.newLabel()
		prog.add(bpf.LoadAbsolute{Off: offArch, Size: 4})
		prog.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: a.arch, SkipTrue: 1})
		prog.jumpTo(next)
		prog.add(bpf.LoadAbsolute{Off: offNr, Size: 4})
		if a.x32 {
			prog.add(bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1})
			prog.add(bpf.RetConstant{Val: retErrno(unix.ENOSYS)})
		}
		// The i386 convention passes 32-bit arguments, whose upper halves
		// the kernel leaves zero; libseccomp compares only the lower ones
		// there.
		wide := a.arch != unix.AUDIT_ARCH_I386
		for _, r := range rules {
			for _, name := range r.names {
				nr, ok := lookupSyscall(table, name)
				if !ok {
					// Profiles name calls of every architecture and
					// kernel; one this table lacks cannot be made here.
					continue
				}
				prog.addBlock(callBlock(nr, r, wide))
			}
		}
		prog.add(bpf.RetConstant{Val: def})
		prog.setLabel(next)
	}
	prog.add(bpf.RetConstant{Val: retErrno(unix.ENOSYS)})
	insns, err := prog.assemble()
	if err != nil {
		return nil, 0, err
	}
	if len(insns) > bpfMaxInsns {
		return nil, 0, fmt.Errorf("the seccomp profile compiles to %d instructions, more than the kernel's %d; list fewer calls", len(insns), bpfMaxInsns)
	}
	return insns, flags, nil
}

// seccompAction is the filter's return value for a libseccomp action.
func seccompAction(action string, errno *uint32) (uint32, error) {
	code := uint32(unix.EPERM)
	if errno != nil {
		code = *errno
	}
	switch action {
	case "SCMP_ACT_ALLOW":
		return unix.SECCOMP_RET_ALLOW, nil
	case "SCMP_ACT_ERRNO":
		return unix.SECCOMP_RET_ERRNO | code&unix.SECCOMP_RET_DATA, nil
	case "SCMP_ACT_TRACE":
		return unix.SECCOMP_RET_TRACE | code&unix.SECCOMP_RET_DATA, nil
	case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD":
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case "SCMP_ACT_KILL_PROCESS":
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case "SCMP_ACT_TRAP":
		return unix.SECCOMP_RET_TRAP, nil
	case "SCMP_ACT_LOG":
		return unix.SECCOMP_RET_LOG, nil
	case "SCMP_ACT_NOTIFY":
		return 0, errors.New("SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), which ursb does not support; use another action")
	}
	return 0, fmt.Errorf("action %q is unknown; use one of SCMP_ACT_ALLOW, ERRNO, TRACE, KILL, KILL_THREAD, KILL_PROCESS, TRAP, LOG", action)
}

// A rule is a profile rule with its action compiled.
type rule struct {
	names []string
	ret   uint32
	args  []spec.SeccompArg
}

// argOps are the comparisons of libseccomp.
var argOps = map[string]bool{
	"SCMP_CMP_NE": true, "SCMP_CMP_LT": true, "SCMP_CMP_LE": true, "SCMP_CMP_EQ": true,
	"SCMP_CMP_GE": true, "SCMP_CMP_GT": true, "SCMP_CMP_MASKED_EQ": true,
}

// callBlock is the code of one rule for call nr, entered and left with the
// call's number in A: it returns the rule's action when the number is nr
// and every argument test holds, and otherwise falls through. Its jumps
// stay within the block, so none needs to be long.
func callBlock(nr uint32, r rule, wide bool) []bpf.Instruction {
	if len(r.args) == 0 {
		return []bpf.Instruction{
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 1},
			bpf.RetConstant{Val: r.ret},
		}
	}
	var tests []filterStep
	for _, a := range r.args {
		tests = append(tests, compareArg(a, wide)...)
	}
	// The block: the number test, the argument tests, the return, and the
	// reload of the number that a failed test jumps to.
	reload := 1 + len(tests) + 1
	block := []bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: uint8(reload - 1)}}
	for _, st := range tests {
		if j, ok := st.in.(bpf.JumpIf); ok {
			toFail := uint8(reload - len(block) - 1)
			if st.failTrue {
				j.SkipTrue = toFail
			}
			if st.failFalse {
				j.SkipFalse = toFail
			}
			st.in = j
		}
		block = append(block, st.in)
	}
	block = append(block, bpf.RetConstant{Val: r.ret})
	return append(block, bpf.LoadAbsolute{Off: offNr, Size: 4})
}

// A filterStep is one instruction of an argument test; a jump that leaves the
// test as failed has its target filled in by callBlock.
type filterStep struct {
	in                  bpf.Instruction
	failTrue, failFalse bool
}

// compareArg is the code of one comparison of a 64-bit argument, made of
// its two 32-bit halves, the upper one first: it falls through when the
// comparison holds, and a jump that decides it holds lands just past the
// code.
func compareArg(a spec.SeccompArg, wide bool) []filterStep {
	lo := bpf.LoadAbsolute{Off: offArgs + 8*uint32(a.Index), Size: 4}
	hi := bpf.LoadAbsolute{Off: offArgs + 8*uint32(a.Index) + 4, Size: 4}
	val, mask := a.Value, ^uint64(0)
	if a.Op == "SCMP_CMP_MASKED_EQ" {
		val, mask = a.ValueTwo, a.Value
	}
	vlo, vhi := uint32(val), uint32(val>>32)
	if !wide {
		vhi = 0
	}
	var out []filterStep
	switch a.Op {
	case "SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ":
		half := func(load bpf.Instruction, m, v uint32) {
			out = append(out, filterStep{in: load})
			if m != ^uint32(0) {
				out = append(out, filterStep{in: bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: m}})
			}
			out = append(out, filterStep{in: bpf.JumpIf{Cond: bpf.JumpEqual, Val: v}, failFalse: true})
		}
		if wide {
			half(hi, uint32(mask>>32), vhi)
		}
		half(lo, uint32(mask), vlo)
	case "SCMP_CMP_NE":
		if wide {
			// A differing upper half is enough: skip the lower one.
			out = append(out, filterStep{in: hi}, filterStep{in: bpf.JumpIf{Cond: bpf.JumpEqual, Val: vhi, SkipFalse: 2}})
		}
		out = append(out, filterStep{in: lo}, filterStep{in: bpf.JumpIf{Cond: bpf.JumpEqual, Val: vlo}, failTrue: true})
	case "SCMP_CMP_GT", "SCMP_CMP_GE":
		if wide {
			// Above in the upper half holds; below fails; equal goes on
			// to the lower half.
			out = append(out, filterStep{in: hi},
				filterStep{in: bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: vhi, SkipTrue: 3}},
				filterStep{in: bpf.JumpIf{Cond: bpf.JumpEqual, Val: vhi}, failFalse: true})
		}
		cond := bpf.JumpGreaterThan
		if a.Op == "SCMP_CMP_GE" {
			cond = bpf.JumpGreaterOrEqual
		}
		out = append(out, filterStep{in: lo}, filterStep{in: bpf.JumpIf{Cond: cond, Val: vlo}, failFalse: true})
	case "SCMP_CMP_LT", "SCMP_CMP_LE":
		if wide {
			// Below in the upper half holds; above fails; equal goes on.
			out = append(out, filterStep{in: hi},
				filterStep{in: bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: vhi, SkipFalse: 3}},
				filterStep{in: bpf.JumpIf{Cond: bpf.JumpEqual, Val: vhi}, failFalse: true})
		}
		// Fails at or above (LT), above (LE).
		cond := bpf.JumpGreaterOrEqual
		if a.Op == "SCMP_CMP_LE" {
			cond = bpf.JumpGreaterThan
		}
		out = append(out, filterStep{in: lo}, filterStep{in: bpf.JumpIf{Cond: cond, Val: vlo}, failTrue: true})
	}
	return out
}

// A program is a filter whose unconditional jumps go to labels, which may
// lie further than a conditional jump's 255 instructions.
type program struct {
	insns  []bpf.Instruction
	jumps  map[int]int // index of a bpf.Jump: its label
	labels []int       // label: the index it marks
}

func (p *program) add(in bpf.Instruction)         { p.insns = append(p.insns, in) }
func (p *program) addBlock(ins []bpf.Instruction) { p.insns = append(p.insns, ins...) }

func (p *program) newLabel() int {
	p.labels = append(p.labels, -1)
	return len(p.labels) - 1
}

func (p *program) setLabel(l int) { p.labels[l] = len(p.insns) }

func (p *program) jumpTo(l int) {
	if p.jumps == nil {
		p.jumps = map[int]int{}
	}
	p.jumps[len(p.insns)] = l
	p.add(bpf.Jump{})
}

func (p *program) assemble() ([]bpf.Instruction, error) {
	for at, l := range p.jumps {
		to := p.labels[l]
		if to < 0 {
			return nil, fmt.Errorf("seccomp filter: label %d never placed", l)
		}
		p.insns[at] = bpf.Jump{Skip: uint32(to - at - 1)}
	}
	return p.insns, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
