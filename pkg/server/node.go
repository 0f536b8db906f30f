package server

import (
	"github.com/skiff-dev/skiff/pkg/config"
)

// NodeConfig is the configuration of the server's own node, which joins it
// through the join API like any other node, on loopback with the agent
// token (known after Init), at the advertise address unless --node-ip says
// otherwise.
func (s *Server) NodeConfig() (*config.Agent, error) {
	return config.NewAgent(s.cfg.DataDir, s.cfg.Node, s.LocalURL(), "", s.advertise)
}
