// The `nucleon` command line: serve, app, token, export, stats. Parses flags
// (each also settable as a NUCLEON_... environment variable) and runs one
// command. Returns the process exit status: 0 ok, 1 runtime error, 2 usage.
#pragma once

namespace nucleon {

int RunCli(int argc, char** argv);

}  // namespace nucleon
