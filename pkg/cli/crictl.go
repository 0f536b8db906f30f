package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	criapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"

	"github.com/skiff-dev/skiff/pkg/config"
)

// newCrictlCommand inspects the node through the CRI, as the kubelet sees
// it: pod sandboxes, containers and images. crictl itself (cri-tools) is not
// on the module proxy these builds use, so this is the read-only part of
// it, on the upstream CRI client, with crictl's subcommand names and
// columns. For anything else, `skiff ctr` reaches containerd directly.
func newCrictlCommand() *cobra.Command {
	var endpoint string
	cmd := &cobra.Command{
		Use:   "crictl",
		Short: "Inspect this node's pods, containers and images through the CRI (pods, ps, images)",
	}
	agent := config.Agent{RunDir: config.DefaultRunDir}
	cmd.PersistentFlags().StringVarP(&endpoint, "runtime-endpoint", "r", "unix://"+agent.ContainerdSocket(), "CRI endpoint")
	var all bool
	ps := &cobra.Command{
		Use:   "ps",
		Short: "List containers (running ones unless -a)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := remote.NewRemoteRuntimeService(cmd.Context(), endpoint, 10*time.Second, nil, false)
			if err != nil {
				return criError(endpoint, err)
			}
			return listContainers(cmd, rs, all)
		},
	}
	ps.Flags().BoolVarP(&all, "all", "a", false, "also exited containers")
	pods := &cobra.Command{
		Use:   "pods",
		Short: "List pod sandboxes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := remote.NewRemoteRuntimeService(cmd.Context(), endpoint, 10*time.Second, nil, false)
			if err != nil {
				return criError(endpoint, err)
			}
			return listPods(cmd, rs)
		},
	}
	images := &cobra.Command{
		Use:   "images",
		Short: "List images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			is, err := remote.NewRemoteImageService(cmd.Context(), endpoint, 10*time.Second, nil, false)
			if err != nil {
				return criError(endpoint, err)
			}
			return listImages(cmd, is)
		},
	}
	cmd.AddCommand(ps, pods, images)
	return cmd
}

func criError(endpoint string, err error) error {
	return fmt.Errorf("connecting to the CRI at %s: %w (is skiff's agent running? run as root)", endpoint, err)
}

func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// short is the 13-character ID prefix crictl shows.
func short(id string) string { return id[:min(len(id), 13)] }

func age(nanos int64) string {
	return duration.HumanDuration(time.Since(time.Unix(0, nanos))) + " ago"
}

func listPods(cmd *cobra.Command, rs criapi.RuntimeService) error {
	pods, err := rs.ListPodSandbox(cmd.Context(), nil)
	if err != nil {
		return err
	}
	var rows [][]string
	for _, p := range pods {
		rows = append(rows, []string{short(p.Id), age(p.CreatedAt), strings.TrimPrefix(p.State.String(), "SANDBOX_"),
			p.Metadata.Name, p.Metadata.Namespace, fmt.Sprint(p.Metadata.Attempt)})
	}
	return table(os.Stdout, "POD ID\tCREATED\tSTATE\tNAME\tNAMESPACE\tATTEMPT", rows)
}

func listContainers(cmd *cobra.Command, rs criapi.RuntimeService, all bool) error {
	var filter *runtimeapi.ContainerFilter
	if !all {
		filter = &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}
	}
	containers, err := rs.ListContainers(cmd.Context(), filter)
	if err != nil {
		return err
	}
	var rows [][]string
	for _, c := range containers {
		image := c.Image.GetUserSpecifiedImage() // the name the pod asked for
		if image == "" {
			image = short(strings.TrimPrefix(c.Image.GetImage(), "sha256:"))
		}
		rows = append(rows, []string{short(c.Id), image, age(c.CreatedAt), strings.TrimPrefix(c.State.String(), "CONTAINER_"),
			c.Metadata.Name, fmt.Sprint(c.Metadata.Attempt), short(c.PodSandboxId), c.Labels["io.kubernetes.pod.name"], c.Labels["io.kubernetes.pod.namespace"]})
	}
	return table(os.Stdout, "CONTAINER\tIMAGE\tCREATED\tSTATE\tNAME\tATTEMPT\tPOD ID\tPOD\tNAMESPACE", rows)
}

func listImages(cmd *cobra.Command, is criapi.ImageManagerService) error {
	images, err := is.ListImages(cmd.Context(), nil)
	if err != nil {
		return err
	}
	var rows [][]string
	for _, img := range images {
		name := "<none>"
		if len(img.RepoTags) > 0 {
			name = img.RepoTags[0]
		}
		pinned := ""
		if img.Pinned {
			pinned = "pinned"
		}
		rows = append(rows, []string{name, short(strings.TrimPrefix(img.Id, "sha256:")), fmt.Sprintf("%.1fMB", float64(img.Size)/1e6), pinned})
	}
	return table(os.Stdout, "IMAGE\tIMAGE ID\tSIZE\tPINNED", rows)
}
