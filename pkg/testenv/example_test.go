package testenv_test

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/pkg/testenv"
)

// New suits TestMain, where there is no testing.T: start one environment
// for the package and stop it after m.Run.
func ExampleNew() {
	env, err := testenv.New(testenv.WithCRDDirectory("testdata/crds"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer env.Stop()
	client := kubernetes.NewForConfigOrDie(env.Config)
	ns, err := client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "example"}}, metav1.CreateOptions{})
	fmt.Println(ns.Name, err)
	// Output: example <nil>
}
