package harness

import "context"

// The hermetic benchmark (bench/cmd/hermetic) records the machine as the
// main benchmark does; these export what machine.go keeps to itself.

// DescribeMachine describes the machine: CPU, memory, kernel, the versions
// of the programs in bins (keys "buildkitd", "buildctl", "registry",
// "vmbuild", "cosign") and of git and runc, and the checkout at root.
func DescribeMachine(ctx context.Context, root string, bins map[string]string) Machine {
	return describeMachine(ctx, root, bins)
}

// StartSampling measures how busy the machine is for two seconds, then
// starts counting CPU pressure and busy time for the run.
func (m *Machine) StartSampling() { m.startSampling() }

// StopSampling computes the run's CPU pressure and busy share.
func (m *Machine) StopSampling() { m.stopSampling() }

// LoadAvg is /proc/loadavg's 1, 5 and 15 minute figures.
func LoadAvg() string { return loadavg() }
