package e2e

import (
	"os"
	"strings"
	"testing"
)

// TestLifecyclePodmanHabits: what podman users type without thinking.
// start and restart keep a sandbox's id and creation time; stop, kill,
// rm, pause, unpause and restart print the names they acted on; ps
// filters and both ps and inspect take Go templates; rename renames.
func TestLifecyclePodmanHabits(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	l.detach("habit", lifeBase(rootfs), "sleep", l.nap())
	first := l.inspect("habit")
	l.detach("other", lifeBase(rootfs), "sleep", l.nap())

	printed := func(want string, args ...string) {
		t.Helper()
		if res := l.must(args...); res.Stdout != want {
			t.Errorf("ursb %s printed %q, want %q", strings.Join(args, " "), res.Stdout, want)
		}
	}
	printed("habit running\n", "ps", "--filter", "name=^hab", "--format", "{{.Name}} {{.Status}}")
	printed("other\n", "ps", "-f", "name=other", "-f", "status=running", "--format", "{{.Name}}")
	printed(first.ID+" running\n", "inspect", "--format", "{{.ID}} {{.Status}}", "habit")
	l.fails(125, "ps", "--filter", "colour=red")
	l.fails(125, "ps", "--format", "{{.Nope")

	printed("habit\n", "stop", "-t", "1", "habit")
	printed("habit exited\n", "ps", "-a", "--filter", "status=exited", "--format", "{{.Name}} {{.Status}}")
	printed("habit\n", "start", "habit")
	again := l.inspect("habit")
	if again.ID != first.ID || again.Created != first.Created || again.StartedAt == first.StartedAt || again.Status != "running" {
		t.Errorf("start should keep the id and creation time and set a new start time: before %+v, after %+v", first, again)
	}
	printed("habit\n", "restart", "-t", "1", "habit")
	if r := l.inspect("habit"); r.ID != first.ID || r.Status != "running" || r.StartedAt == again.StartedAt {
		t.Errorf("restart: %+v", r)
	}
	if os.Getenv("URSB_CGROUP_LANE") != "" || os.Getenv("URSB_E2E_CGROUP") != "" {
		printed("habit\n", "pause", "habit")
		printed("habit\n", "unpause", "habit")
	}
	printed("habit\n", "kill", "habit")
	l.waitExited("habit")

	l.fails(125, "rename", "other", "renamed")
	l.fails(125, "rename", "habit", "other")
	l.must("rename", "habit", "renamed")
	printed("renamed\n", "ps", "-a", "--filter", "name=^renamed$", "--format", "{{.Name}}")
	if r := l.inspect("renamed"); r.ID != first.ID {
		t.Errorf("the renamed sandbox has id %s, want %s", r.ID, first.ID)
	}
	if res := l.ursb("inspect", "habit"); res.Code == 0 {
		t.Errorf("the old name still answers: %s", res)
	}
	l.track("renamed")
	printed("renamed\n", "start", "renamed")
	printed("renamed\nother\n", "rm", "-f", "renamed", "other")
}
