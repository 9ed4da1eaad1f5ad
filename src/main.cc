// nucleon: a self-hosted analytics server that speaks the Nucleus protocol.
#include <csignal>

#include "cli/cli.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  return nucleon::RunCli(argc, argv);
}
