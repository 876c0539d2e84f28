/* sluice: the operator's CLI (commands arrive with the tenant store). */
#include <stdio.h>

int main(void)
{
    fputs("usage: sluice COMMAND ...\n", stderr);
    return 2;
}
