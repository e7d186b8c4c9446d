#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
unsigned long long __isoc23_strtoull(const char*s,char**e,int b){return strtoull(s,e,b);}
int __isoc23_sscanf(const char*s,const char*f,...){va_list ap;va_start(ap,f);int r=vsscanf(s,f,ap);va_end(ap);return r;}
