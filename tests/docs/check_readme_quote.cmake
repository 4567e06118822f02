# Fails unless README.md holds, word for word, the lines of SOURCE between
# its "// readme-begin" and "// readme-end" markers (leading indentation
# removed), inside a ```cpp block.
file(READ "${SOURCE}" source)
string(FIND "${source}" "// readme-begin\n" begin)
string(FIND "${source}" "// readme-end" end)
if(begin EQUAL -1 OR end EQUAL -1)
  message(FATAL_ERROR "${SOURCE} has no readme-begin / readme-end markers")
endif()
math(EXPR begin "${begin} + 16")
math(EXPR length "${end} - ${begin}")
string(SUBSTRING "${source}" ${begin} ${length} quote)
# The markers' indentation is the block's: drop it from every line.
string(REGEX MATCH "\n([ ]*)// readme-end" indent_match "${source}")
set(indent "${CMAKE_MATCH_1}")
string(REPLACE "\n${indent}" "\n" quote "\n${quote}")
string(SUBSTRING "${quote}" 1 -1 quote)
string(REGEX REPLACE "[ ]+$" "" quote "${quote}")
file(READ "${README}" readme)
string(FIND "${readme}" "```cpp\n${quote}```" at)
if(at EQUAL -1)
  message(FATAL_ERROR "README.md does not quote ${SOURCE} as it is now; copy this block into it:\n```cpp\n${quote}```")
endif()
message(STATUS "README.md quotes ${SOURCE} word for word")
