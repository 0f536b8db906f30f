package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"

	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/pkg/supervisor"
)

// ensureTokens reads or makes the join tokens: the server token
// (<server>/token, joins servers and agents) and the agent token
// (<server>/agent-token, joins agents), each K10<CA hash>::<credential>,
// mode 0600. A token given with --token or --agent-token replaces the one
// stored.
func (s *Server) ensureTokens() error {
	ca, err := pkiutil.TryLoadCertFromDisk(string(s.tls), pki.ServerCA)
	if err != nil {
		return fmt.Errorf("reading the server CA for the join tokens: %w", err)
	}
	hash := supervisor.CAHash(ca)
	if s.serverToken, err = ensureToken(s.cfg.TokenFile(), s.cfg.Token, "--token", hash); err != nil {
		return err
	}
	agentToken := s.cfg.AgentToken
	if agentToken == "" {
		agentToken = s.joinedAgentToken // the cluster's, from the server joined
	}
	s.agentToken, err = ensureToken(s.cfg.AgentTokenFile(), agentToken, "--agent-token", hash)
	return err
}

func ensureToken(path, given, flag, hash string) (supervisor.Token, error) {
	source := flag
	if given == "" {
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			given, source = string(bytes.TrimSpace(data)), path
		case !errors.Is(err, os.ErrNotExist):
			return supervisor.Token{}, fmt.Errorf("reading the join token: %w", err)
		}
	}
	var t supervisor.Token
	var err error
	if given == "" {
		t, err = supervisor.NewToken(hash)
	} else {
		t, err = supervisor.ParseToken(given)
		if err == nil && t.CAHash != "" && t.CAHash != hash {
			err = fmt.Errorf("it pins another CA than this server's (%s…); give the credential alone, without K10…::", hash[:12])
		}
		t.CAHash = hash
	}
	if err != nil {
		return t, fmt.Errorf("join token from %s: %w", source, err)
	}
	if err := pki.WriteFileIfChanged(path, []byte(t.String()+"\n"), 0o600); err != nil {
		return t, fmt.Errorf("writing the join token %s: %w", path, err)
	}
	return t, nil
}
