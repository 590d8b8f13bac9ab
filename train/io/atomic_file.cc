#include "train/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <streambuf>

#include "core/error.h"

namespace loom::train {
namespace {

std::string errno_str(int err) { return std::strerror(err); }

// An output streambuf over a POSIX descriptor: std::ofstream cannot fsync, and checking every
// write() lets a full disk surface as an IOError instead of a silently short file.
class FdOutBuf : public std::streambuf {
 public:
  FdOutBuf(int fd, std::string path) : fd_(fd), path_(std::move(path)), buf_(1 << 20) {
    setp(buf_.data(), buf_.data() + buf_.size());
  }
  void flush_all() {
    write_all(pbase(), size_t(pptr() - pbase()));
    setp(buf_.data(), buf_.data() + buf_.size());
  }

 protected:
  int_type overflow(int_type ch) override {
    flush_all();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    if (n >= std::streamsize(buf_.size())) {  // large blocks bypass the buffer
      flush_all();
      write_all(s, size_t(n));
      return n;
    }
    return std::streambuf::xsputn(s, n);
  }
  int sync() override {
    flush_all();
    return 0;
  }

 private:
  void write_all(const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        LOOM_THROW(IOError, "cannot write ", path_, ": ", errno_str(errno));
      }
      p += w;
      n -= size_t(w);
    }
  }
  int fd_;
  std::string path_;
  std::vector<char> buf_;
};

void fsync_directory_of(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) LOOM_THROW(IOError, "cannot open directory ", dir.string(), " to sync it: ", errno_str(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems cannot sync directories (EINVAL); the rename itself has happened.
  if (rc != 0 && err != EINVAL)
    LOOM_THROW(IOError, "cannot sync directory ", dir.string(), ": ", errno_str(err));
}

}  // namespace

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) LOOM_THROW(IOError, "cannot create ", tmp, ": ", errno_str(errno));
  try {
    FdOutBuf buf(fd, tmp);
    std::ostream os(&buf);
    // With badbit in exceptions(), the stream rethrows the IOError the buffer raised (with errno)
    // instead of swallowing it.
    os.exceptions(std::ios::badbit);
    write(os);
    os.flush();
    if (!os) LOOM_THROW(IOError, "cannot write ", tmp, ": stream error");
    buf.flush_all();
    if (::fsync(fd) != 0) LOOM_THROW(IOError, "cannot sync ", tmp, ": ", errno_str(errno));
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) LOOM_THROW(IOError, "cannot close ", tmp, ": ", errno_str(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      LOOM_THROW(IOError, "cannot rename ", tmp, " to ", path, ": ", errno_str(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_directory_of(path);
}

void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_file_atomic(path, [&](std::ostream& os) {
    os.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  });
}

uint64_t file_size_checked(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) LOOM_THROW(IOError, "cannot open ", path, ": ", errno_str(errno));
  if (!S_ISREG(st.st_mode)) LOOM_THROW(IOError, "cannot read ", path, ": not a regular file");
  return uint64_t(st.st_size);
}

std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes) {
  uint64_t size = file_size_checked(path);
  if (size > max_bytes)
    LOOM_THROW(IOError, "cannot read ", path, ": ", size, " bytes is more than the limit of ",
               max_bytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) LOOM_THROW(IOError, "cannot open ", path, ": ", errno_str(errno));
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(size));
  if (size_t(in.gcount()) != bytes.size())
    LOOM_THROW(IOError, "cannot read ", path, ": expected ", size, " bytes, got ", in.gcount(),
               " (file changed while reading?)");
  return bytes;
}

}  // namespace loom::train
