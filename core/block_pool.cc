#include "core/block_pool.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace loom {

bool BlockPool::FreeOrder::operator()(const Block* a, const Block* b) const {
  const std::less<const void*> before;
  if (a->pool != b->pool) return before(a->pool, b->pool);
  if (a->small != b->small) return a->small < b->small;
  if (a->size != b->size) return a->size < b->size;
  return before(a->ptr, b->ptr);
}

BlockPool::~BlockPool() {
  std::vector<Block*> heads;
  for (Block* b : free_)
    if (!b->prev) heads.push_back(b);
  for (auto& [ptr, b] : allocated_)
    if (!b->prev) heads.push_back(b);
  for (Block* b : heads)
    while (b) delete std::exchange(b, b->next);
}

size_t BlockPool::block_size(size_t nbytes) {
  return nbytes == 0 ? kAlignment : (nbytes + kAlignment - 1) / kAlignment * kAlignment;
}

size_t BlockPool::segment_size(size_t nbytes) {
  const size_t size = block_size(nbytes);
  if (size < kSmallLimit) return kSegmentGranule;
  return (size + kSegmentGranule - 1) / kSegmentGranule * kSegmentGranule;
}

void* BlockPool::allocate(size_t nbytes, Pool pool) {
  if (nbytes > SIZE_MAX / 2) return nullptr;  // no device has room, and rounding would overflow
  const size_t size = block_size(nbytes);
  const bool small = size < kSmallLimit;
  Block* block = take_free_block(size, small, pool);
  if (!block) block = map_segment(segment_size(nbytes), small, pool);
  if (!block) return nullptr;
  split(block, size);
  block->allocated = true;
  allocated_.emplace(block->ptr, block);
  stats_.allocated += block->size;
  stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
  return block->ptr;
}

BlockPool::Block* BlockPool::take_free_block(size_t size, bool small, Pool pool) {
  Block probe{nullptr, size, pool, small};
  auto it = free_.lower_bound(&probe);
  if (it == free_.end() || (*it)->pool != pool || (*it)->small != small) return nullptr;
  Block* block = *it;
  free_.erase(it);
  return block;
}

BlockPool::Block* BlockPool::map_segment(size_t size, bool small, Pool pool) {
  void* base = source_.map(size);
  if (!base) return nullptr;
  stats_.reserved += size;
  ++stats_.segments_mapped;
  return new Block{static_cast<char*>(base), size, pool, small};
}

// Splits the tail beyond `size` off as a free block when it can serve a request of the block's
// class: any tail for small blocks, one of at least kSmallLimit for large ones (a shorter tail
// of a large segment could never be used).
void BlockPool::split(Block* block, size_t size) {
  const size_t tail = block->size - size;
  if (tail == 0 || (!block->small && tail < kSmallLimit)) return;
  Block* rest = new Block{block->ptr + size, tail, block->pool, block->small};
  rest->prev = block;
  rest->next = block->next;
  if (block->next) block->next->prev = rest;
  block->next = rest;
  block->size = size;
  free_.insert(rest);
}

// `block` takes in its successor's bytes; neither may be in free_.
void BlockPool::absorb_next(Block* block) {
  Block* next = block->next;
  block->size += next->size;
  block->next = next->next;
  if (next->next) next->next->prev = block;
  delete next;
}

size_t BlockPool::free(void* ptr) {
  auto it = allocated_.find(ptr);
  if (it == allocated_.end()) return 0;
  Block* block = it->second;
  allocated_.erase(it);
  const size_t size = block->size;
  stats_.allocated -= size;
  block->allocated = false;
  if (block->prev && !block->prev->allocated) {  // the free predecessor leaves free_ to grow
    block = block->prev;
    free_.erase(block);
    absorb_next(block);
  }
  if (block->next && !block->next->allocated) {
    free_.erase(block->next);
    absorb_next(block);
  }
  free_.insert(block);
  return size;
}

size_t BlockPool::release_free_segments(const std::function<bool(Pool)>& keep) {
  size_t released = 0;
  for (auto it = free_.begin(); it != free_.end();) {
    Block* b = *it;
    if (!b->whole_segment() || keep(b->pool)) {
      ++it;
      continue;
    }
    it = free_.erase(it);
    source_.unmap(b->ptr, b->size);
    stats_.reserved -= b->size;
    ++stats_.segments_unmapped;
    released += b->size;
    delete b;
  }
  return released;
}

void BlockPool::move_pool(Pool from, Pool to) {
  std::vector<Block*> moved;
  for (auto it = free_.begin(); it != free_.end();) {
    if ((*it)->pool == from) {
      moved.push_back(*it);
      it = free_.erase(it);
    } else {
      ++it;
    }
  }
  for (Block* b : moved) b->pool = to;
  free_.insert(moved.begin(), moved.end());
  for (auto& [ptr, b] : allocated_)
    if (b->pool == from) b->pool = to;
}

}  // namespace loom
