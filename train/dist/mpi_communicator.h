// The MPI communicator (CPU buffers): non-blocking MPI collectives polled against dist::timeout(),
// so a dead or hung peer gives DistError instead of a hang. Compiled with MPI when CMake found one
// (cmake/mpi.cmake defines LOOM_MPI=1); without it mpi_compiled() is false and
// make_mpi_communicator throws.
#pragma once
#include <memory>

#include "train/dist/communicator.h"

namespace loom::dist {

bool mpi_compiled();
/// Initialises MPI once (MPI_THREAD_SERIALIZED) and returns a communicator over a duplicate of
/// MPI_COMM_WORLD. MPI is finalised at exit, or aborted (MPI_Abort) when a collective failed.
std::unique_ptr<Communicator> make_mpi_communicator();
/// MPI_Finalize when loom initialised MPI and nothing failed (MPI_Abort when something did).
void mpi_finalize();

}  // namespace loom::dist
